"""Webdataset shards as a dataset: ``webdataset:/data/shards-{000000..000009}.tar`` (or a folder, glob or file).

The webdataset layout is plain tar: the files of one sample sit next to each other and share a key, the
member path up to the first dot of its file name (``train/000042.jpg`` and ``train/000042.cls`` are one
sample with key ``train/000042``). The file's extension says what it holds:

=====================  ======================================================================
``jpg jpeg png webp``  ``image``: float ``[3, H, W]`` in ``[0, 1]`` (``size=N``: shorter side to N,
                       centre crop, as ``image-folder`` does)
``wav flac``           ``audio``: float mono ``[T]`` in ``[-1, 1]``, resampled to ``sample_rate=``
                       when given (else ``item["sample_rate"]`` is the file's own rate)
``txt``                ``text``: UTF-8
``cls``                ``label``: an integer written as text
=====================  ======================================================================

Other files (``.json``, ``.npy``...) are ignored; a sample with none of the files above is skipped.
Items keep the shards' order (as braces name them; a folder's or glob's files sorted) and, inside a shard, the
tar order, and carry their ``key``.

The tars are read with the standard library's ``tarfile``, not the ``webdataset`` package: that package
streams samples in order (an ``IterableDataset``), while ``zoo tokenize`` and the trainers address items by
index. One pass over the tar headers (no file data is read) records each member's offset and size in
compact arrays; an item is then one seek and read per file, so memory grows with the number of files (21
bytes each, plus 16 bytes and the key per sample), never with the bytes of the corpus. Compressed tars
(``.tar.gz``) have no such offsets: decompress them first.
"""

from __future__ import annotations

import glob
import io
import re
import tarfile
from array import array
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo import io as zoo_io
from zoo.errors import ZooError

# Extension -> the item entry it fills; FIELDS' order is the code stored per member.
EXTENSIONS = {"jpg": "image", "jpeg": "image", "png": "image", "webp": "image", "wav": "audio", "flac": "audio",
              "txt": "text", "cls": "label"}
FIELDS = ("image", "audio", "text", "label")
SPLITS = ("all", "train", "val", "test")
_BRACES = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"(\d+)\.\.(\d+)")


def expand_braces(pattern: str) -> list[str]:
    """``a-{000..002}.tar`` -> ``a-000.tar a-001.tar a-002.tar`` (zero padding kept); ``{x,y}`` lists too.

    The leftmost braces vary slowest, as in the shell; braces holding neither a range nor a comma stay as they are.
    """
    for match in _BRACES.finditer(pattern):
        body, head, tail = match.group(1), pattern[: match.start()], pattern[match.end() :]
        numbers = _RANGE.fullmatch(body)
        if numbers:
            first, last = numbers.group(1), numbers.group(2)
            width = len(first) if first.startswith("0") or len(first) == len(last) else 0
            step = 1 if int(last) >= int(first) else -1
            choices = [f"{n:0{width}d}" for n in range(int(first), int(last) + step, step)]
        elif "," in body:
            choices = body.split(",")
        else:
            continue
        return [name for choice in choices for name in expand_braces(head + choice + tail)]
    return [pattern]


def shard_files(pattern: str) -> list[Path]:
    """The tar files a pattern names: a folder (every ``*.tar`` under it), braces, a glob or one file; sorted."""
    where = Path(str(pattern)).expanduser()
    if where.is_dir():
        files = sorted(p for p in where.rglob("*.tar") if p.is_file())
        if not files:
            raise ZooError(f"dataset 'webdataset': no .tar files under the folder {where}")
        return files
    if "{" in str(pattern):
        files = [Path(name).expanduser() for name in expand_braces(str(pattern))]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise ZooError(f"dataset 'webdataset': {pattern} names {len(files)} shards, {len(missing)} missing "
                           f"(first: {missing[0]})")
        return files
    if where.is_file():
        return [where]
    files = sorted(Path(p) for p in glob.glob(str(where), recursive=True) if Path(p).is_file())
    if not files:
        raise ZooError(f"dataset 'webdataset': {pattern} is no tar file, folder or pattern matching any file")
    return files


def _split_name(name: str) -> tuple[str, str]:
    """A member path -> (sample key, lower-case extension after the first dot of the file name)."""
    folder, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


class TarIndex:
    """Where every file of every sample lies: one pass over the tar headers, kept in flat arrays.

    Member ``m`` of the index is ``FIELDS[field[m]]`` of its sample, ``size[m]`` bytes at ``offset[m]`` of
    ``shards[shard[m]]``; sample ``i`` owns members ``start[i]:start[i + 1]`` and its key is
    ``keys[key_start[i]:key_start[i + 1]]`` (UTF-8).
    """

    def __init__(self, shards: list[Path]):
        self.shards = shards
        shard, field, offset, size = array("i"), array("b"), array("q"), array("q")
        start, key_start, keys = array("q", [0]), array("q", [0]), bytearray()

        def close(sample_key: str | None, sample_fields: set) -> None:  # the members since the last close: a sample
            if sample_fields:
                start.append(len(field))
                keys.extend(sample_key.encode("utf-8", "surrogateescape"))
                key_start.append(len(keys))

        for number, path in enumerate(shards):
            files = 0
            current, fields = None, set()
            for info in _members(path):
                files += 1
                key, extension = _split_name(info.name)
                kind = EXTENSIONS.get(extension)
                if kind is None:
                    continue
                if key != current:
                    close(current, fields)
                    current, fields = key, set()
                if kind in fields:
                    raise ZooError(f"dataset 'webdataset': {path}: sample {key!r} has two {kind} files "
                                   f"(a second one is {info.name}); a sample holds one file per kind")
                fields.add(kind)
                shard.append(number)
                field.append(FIELDS.index(kind))
                offset.append(info.offset_data)
                size.append(info.size)
            close(current, fields)
            if files == 0:
                raise ZooError(f"dataset 'webdataset': {path} holds no files (an empty tar)")
        self.shard, self.field = np.frombuffer(shard, np.int32), np.frombuffer(field, np.int8)
        self.offset, self.size = np.frombuffer(offset, np.int64), np.frombuffer(size, np.int64)
        self.start, self.key_start = np.frombuffer(start, np.int64), np.frombuffer(key_start, np.int64)
        self.keys = bytes(keys)

    def __len__(self) -> int:
        return len(self.start) - 1

    def key(self, sample: int) -> str:
        return self.keys[self.key_start[sample] : self.key_start[sample + 1]].decode("utf-8", "surrogateescape")

    def members(self, sample: int) -> range:
        return range(int(self.start[sample]), int(self.start[sample + 1]))


def _members(path: Path):
    """The regular files of one uncompressed tar, in tar order, without keeping their headers in memory."""
    with open(path, "rb") as handle:
        magic = handle.read(2)
    if magic == b"\x1f\x8b":
        raise ZooError(f"dataset 'webdataset': {path} is gzip-compressed; items are read by offset, so the tars "
                       "must be plain: decompress them first (gunzip)")
    try:
        tar = tarfile.open(path, mode="r:")
    except tarfile.ReadError as err:
        if path.stat().st_size == 0:
            raise ZooError(f"dataset 'webdataset': {path} holds no files (an empty tar)") from None
        raise ZooError(f"dataset 'webdataset': {path} is not a tar file ({err})") from None
    with tar:
        while True:
            try:
                info = tar.next()
            except tarfile.TarError as err:
                raise ZooError(f"dataset 'webdataset': {path} is damaged after {tar.offset} bytes ({err})") from None
            if info is None:
                return
            tar.members = []  # TarFile keeps every header it has read; an index of offsets needs none of them
            if info.isfile():
                yield info


# -- decoding files (shared with the HF datasets source) --------------------------------------------------------


def decode_image(data: bytes, where: str, size: int | None = None) -> torch.Tensor:
    """Encoded image bytes -> float ``[3, H, W]`` in ``[0, 1]``; ``size`` resizes and centre-crops as image-folder."""
    from zoo.data.images import _centre_square

    image = zoo_io.decode_image(io.BytesIO(data), where)
    return _centre_square(image, size) if size is not None else image


def decode_audio(data: bytes, where: str, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Encoded audio bytes -> (float mono ``[T]`` in ``[-1, 1]``, its rate), resampled to ``sample_rate`` if given."""
    return zoo_io.decode_audio(io.BytesIO(data), where, sample_rate)


def decode_label(data: bytes, where: str) -> int:
    try:
        return int(data.decode("utf-8").strip())
    except (UnicodeDecodeError, ValueError):
        raise ZooError(f"{where}: a .cls file must hold one integer, got {data[:40]!r}") from None


# -- the dataset -------------------------------------------------------------------------------------------------


class WebDatasetShards(Dataset):
    """Samples of webdataset tars read by index (one open shard at a time); see the module docstring."""

    def __init__(self, index: TarIndex, order: np.ndarray, size: int | None, sample_rate: int | None,
                 fields: set[str]):
        self.index, self.order, self.size, self.fields = index, order, size, fields
        self.sample_rate = sample_rate
        self._open: tuple[int, object] | None = None  # (shard number, file): items of a shard come in runs

    def __len__(self) -> int:
        return len(self.order)

    def __getstate__(self) -> dict:  # DataLoader workers get a copy without the open file
        return {**self.__dict__, "_open": None}

    def _read(self, member: int) -> bytes:
        shard = int(self.index.shard[member])
        if self._open is None or self._open[0] != shard:
            if self._open is not None:
                self._open[1].close()
            self._open = (shard, open(self.index.shards[shard], "rb"))
        handle = self._open[1]
        handle.seek(int(self.index.offset[member]))
        return handle.read(int(self.index.size[member]))

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        sample = int(self.order[index])
        key = self.index.key(sample)
        item: dict = {"key": key}
        for member in self.index.members(sample):
            field = FIELDS[self.index.field[member]]
            if field not in self.fields:
                continue
            where = f"{self.index.shards[int(self.index.shard[member])]}: sample {key!r} ({field})"
            data = self._read(member)
            if field == "image":
                item["image"] = decode_image(data, where, self.size)
            elif field == "audio":
                item["audio"], item["sample_rate"] = decode_audio(data, where, self.sample_rate)
            elif field == "text":
                item["text"] = zoo_io.decode_text(data, where)
            else:
                item["label"] = decode_label(data, where)
        return item


def webdataset(
    path: str,
    split: str = "all",
    seed: int = 0,
    limit: int | None = None,
    size: int | None = None,
    sample_rate: int | None = None,
    modality: str | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> WebDatasetShards:
    """Samples of webdataset tar shards (``path``: braces ``{000..009}``, a folder, a glob or one ``.tar``).

    Args:
        split: ``all`` keeps every sample; ``train`` / ``val`` / ``test`` take seeded fractions of them (each
            kept in tar order).
        limit: the first ``limit`` samples of the split, in tar order.
        size: resize images' shorter side to ``size`` and centre-crop ``size`` x ``size``.
        sample_rate: resample audio to this rate (Hz).
        modality: decode only this kind of file (``image``, ``audio`` or ``text``) plus the label, so that a
            text tokenizer over captioned images never decodes the images.
    """
    if split not in SPLITS:
        raise ZooError(f"dataset 'webdataset': split must be one of {SPLITS}, got {split!r}")
    for key, value, low in (("limit", limit, 0), ("size", size, 1), ("sample_rate", sample_rate, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ZooError(f"dataset 'webdataset': {key} must be an integer >= {low}, got {value!r}")
    if modality not in (None, "image", "audio", "text"):
        raise ZooError(f"dataset 'webdataset': modality must be image, audio or text, got {modality!r}")
    index = TarIndex(shard_files(path))
    if len(index) == 0:
        raise ZooError(f"dataset 'webdataset': {path} holds no sample with a file of a known kind "
                       f"(extensions: {', '.join(EXTENSIONS)})")
    order = np.arange(len(index), dtype=np.int64)
    if split != "all":
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ZooError(f"dataset 'webdataset': val_fraction + test_fraction must lie in [0, 1), got "
                           f"{val_fraction} + {test_fraction}")
        shuffled = np.random.default_rng([seed, 0]).permutation(len(index))
        n_test, n_val = round(test_fraction * len(index)), round(val_fraction * len(index))
        parts = {"test": shuffled[:n_test], "val": shuffled[n_test : n_test + n_val],
                 "train": shuffled[n_test + n_val :]}
        order = np.sort(parts[split])
    if limit is not None:
        order = order[:limit]
    fields = set(FIELDS) if modality is None else {modality, "label"}
    return WebDatasetShards(index, order, size, sample_rate, fields)
