"""Token shards written by ``zoo tokenize`` (``zoo.tokenize``), read back as a dataset: ``token-shards:DIR``.

The format, defined here so that readers and the writer share it::

    DIR/manifest.json          tokenizer, source, zoo version, every shard with rows and sha256 (written last)
    DIR/shard-00000.parquet    one row per item: key (string), ids (list<int64>, flattened), shape (list<int32>),
                               label (int64, -1 when none)

Items are ``{"tokens": Long [*shape], "label": int, "key": str, "tokens_of": weights sha256}``, in source
order. Shards are read lazily, one at a time, and checked against the manifest's sha256 when opened.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch.utils.data import Dataset

from zoo.errors import ZooError

MANIFEST = "manifest.json"
FORMAT = "zoo-token-shards/1"
COLUMNS = ("key", "ids", "shape", "label")


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.parquet"


def read_manifest(folder: str | Path) -> dict:
    """A finished run's manifest; a folder without one is not (yet) a token-shards folder."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise ZooError(f"{folder}: no {MANIFEST} (not a finished `zoo tokenize` output; rerun it to complete it)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ZooError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(
        manifest.get("shards"), list
    ):
        raise ZooError(f"{path}: not a {FORMAT} manifest")
    return manifest


class TokenShards(Dataset):
    """The items of a token-shards folder, in source order (see the module docstring)."""

    def __init__(self, folder: str | Path, verify: bool = True):
        self.folder, self.verify = Path(folder), verify
        self.manifest = read_manifest(folder)
        self.shards = self.manifest["shards"]
        self.starts = []
        total = 0
        for shard in self.shards:
            self.starts.append(total)
            total += int(shard["rows"])
        self.count = total
        self.fingerprint = self.manifest["tokenizer"].get("weights_sha256")
        self.vocab_size = int(self.manifest["tokenizer"]["vocab_size"])
        self._cached: tuple[int, dict] | None = None

    def __len__(self) -> int:
        return self.count

    def _shard(self, number: int) -> dict:
        if self._cached is not None and self._cached[0] == number:
            return self._cached[1]
        import pyarrow.parquet as pq

        record = self.shards[number]
        path = self.folder / record["file"]
        if not path.is_file():
            raise ZooError(f"{path}: missing (the manifest lists it)")
        data = path.read_bytes()
        if self.verify and hashlib.sha256(data).hexdigest() != record["sha256"]:
            raise ZooError(f"{path}: sha256 differs from the manifest's; the shard changed after it was written")
        import pyarrow as pa

        table = pq.read_table(pa.BufferReader(data)).to_pydict()
        self._cached = (number, table)
        return table

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.count:
            raise IndexError(index)
        import bisect

        number = bisect.bisect_right(self.starts, index) - 1
        table, row = self._shard(number), index - self.starts[number]
        tokens = torch.tensor(table["ids"][row], dtype=torch.long).reshape(table["shape"][row])
        return {"tokens": tokens, "label": int(table["label"][row]), "key": table["key"][row],
                "tokens_of": self.fingerprint}


def token_shards(path: str, verify: bool = True) -> TokenShards:
    """The ``token-shards`` dataset builder (``token-shards:DIR``)."""
    return TokenShards(path, verify=verify)
