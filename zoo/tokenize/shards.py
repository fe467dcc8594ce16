"""Token shards: one Parquet file per fixed run of items, written atomically, described by a manifest.

A run cuts the source's items, in the source's own order, into shards of ``items_per_shard`` items:
shard ``i`` holds items ``[i * n, (i + 1) * n)``. What a shard holds depends only on those items and the
tokenizer, never on which worker wrote it or when, so any number of workers (or a rerun after a crash)
writes the same bytes.

``OUT/shard-00000.parquet`` columns (one row per item):

=========  ==================  ==========================================================
``key``    string              the item's source key (its index, or ``path`` / ``key`` field)
``ids``    list<int64>         the token ids, flattened in C order
``shape``  list<int32>         the ids' shape for that item (``[h, w]``, ``[N, q]``, ``[L]``)
``label``  int64               the item's label, ``-1`` when it has none
=========  ==================  ==========================================================

``OUT/manifest.json`` records the tokenizer (name, class, config, weights sha256), the source spec,
the zoo version, and every shard with its row count and sha256; it is written last, so its presence
marks a complete run. Shards are readable with any Parquet reader (``pyarrow.parquet.read_table``,
pandas, polars, HF ``datasets``) and with ``zoo.data.load_dataset("token-shards:OUT")``.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from zoo.data.token_shards import FORMAT
from zoo.errors import ZooError


@dataclass(frozen=True)
class Plan:
    """Which items go to which shard: ``count`` items, ``items_per_shard`` per shard."""

    count: int
    items_per_shard: int

    @property
    def shards(self) -> int:
        return -(-self.count // self.items_per_shard)

    def items(self, shard: int) -> range:
        start = shard * self.items_per_shard
        return range(start, min(start + self.items_per_shard, self.count))


def item_key(item: dict, index: int) -> str:
    """The key a row keeps of its source item: a path or key the dataset gives, else the item's index."""
    for field in ("path", "key", "id"):
        if isinstance(item.get(field), (str, int)):
            return str(item[field])
    return str(index)


def _ids_of(tokenizer, item: dict, index: int) -> torch.Tensor:
    """One item's ids as a tensor (text: a list of ints; images: ``[h, w]``...; audio: the valid frames)."""
    modality = tokenizer.modality
    if modality not in item:
        raise ZooError(f"tokenize: the source yields items with keys {sorted(item)}, but a {modality} tokenizer "
                       f"needs a {modality!r} entry")
    value = item[modality]
    if modality == "text":
        return torch.tensor(tokenizer.encode(value), dtype=torch.long)
    with torch.no_grad():
        if modality == "image":
            return torch.as_tensor(tokenizer.encode(value.unsqueeze(0)))[0].long().cpu()
        rate = item.get("sample_rate")  # sources that keep each file's own rate say it per item
        if rate is not None and int(rate) != int(tokenizer.sample_rate):
            raise ZooError(f"tokenize: item {item_key(item, index)!r} is audio at {rate} Hz but the tokenizer takes "
                           f"{tokenizer.sample_rate} Hz; add sample_rate={tokenizer.sample_rate} to the source spec")
        encoded = tokenizer.encode(value.reshape(1, -1))
        if encoded.scales is not None:  # shards store ids only, and these ids would not decode without their scales
            raise ZooError(f"tokenize: {type(tokenizer).__name__} gives per-chunk scales beside its ids "
                           "(AudioTokens.scales, EnCodec 48 kHz) and token shards store ids only; use a codec whose "
                           "ids decode on their own (encodec-24khz, dac-*, mimi, ...)")
        return encoded.ids[0, : int(encoded.lengths[0])].long().cpu()


def encode_shard(tokenizer, dataset, plan: Plan, shard: int) -> bytes:
    """The Parquet bytes of one shard (deterministic: the same items and tokenizer give the same bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    keys, ids, shapes, labels = [], [], [], []
    for index in plan.items(shard):
        item = dataset[index]
        tokens = _ids_of(tokenizer, item, index)
        keys.append(item_key(item, index))
        ids.append(tokens.reshape(-1).tolist())
        shapes.append(list(tokens.shape))
        label = item.get("label")
        labels.append(int(label) if isinstance(label, (int, torch.Tensor)) and not isinstance(label, bool) else -1)
    table = pa.table({
        "key": pa.array(keys, pa.string()),
        "ids": pa.array(ids, pa.list_(pa.int64())),
        "shape": pa.array(shapes, pa.list_(pa.int32())),
        "label": pa.array(labels, pa.int64()),
    })
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


def complete_shard(path: Path, rows: int) -> str | None:
    """The sha256 of a finished shard file with ``rows`` rows, or None when it is absent or unreadable."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return None
    try:
        if pq.ParquetFile(path).metadata.num_rows != rows:
            return None
    except Exception:  # a damaged file of any kind is redone, not trusted
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest()


def describe_run(tokenizer, name: str, source: Any, plan: Plan) -> dict:
    """What a run's shards depend on; a rerun into the same folder must match it."""
    from zoo._version import __version__
    from zoo.pretrained import target_of, weights_sha256

    return {
        "format": FORMAT,
        "tokenizer": {"name": str(name), "target": target_of(type(tokenizer)), "config": tokenizer.config,
                      "weights_sha256": weights_sha256(tokenizer), "vocab_size": int(tokenizer.vocab_size),
                      "modality": tokenizer.modality},
        "source": source,
        "items": plan.count,
        "items_per_shard": plan.items_per_shard,
        "zoo_version": __version__,
    }
