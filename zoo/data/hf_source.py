"""A local Hugging Face ``datasets`` dataset as a zoo dataset: ``hf-dataset:/data/saved`` (offline only).

``path`` is a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``, or Parquet / Arrow
files (a file, a folder of them, or a glob), read with ``datasets.load_dataset("parquet", data_files=...)``.
The network is never used: ``HF_DATASETS_OFFLINE=1`` is set before ``datasets`` loads.

One column becomes the item's entry, by its feature type: an ``Image`` column -> ``image`` (float
``[3, H, W]`` in ``[0, 1]``), an ``Audio`` column -> ``audio`` (float mono ``[T]``, resampled to
``sample_rate=``, else ``item["sample_rate"]`` is the file's rate), a string column -> ``text``. By default
it is the column named ``image``, ``audio`` or ``text`` (the first that exists); ``label`` (an integer or
``ClassLabel`` column) is added when present. Images and audio are decoded by zoo (the column is cast to
``decode=False``), the same way as webdataset files, so no decoding extra of ``datasets`` is needed.
Rows are read from the memory-mapped Arrow files one at a time: memory does not grow with the dataset.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

from torch.utils.data import Dataset

from zoo.data.webdataset_source import decode_audio, decode_image
from zoo.errors import ZooError

DEFAULT_COLUMNS = ("image", "audio", "text")
DATA_SUFFIXES = {".parquet": "parquet", ".arrow": "arrow"}


def _datasets():
    """``datasets``, imported offline (it reads the setting when it is first imported). Only datasets' own switch
    is set: ``HF_HUB_OFFLINE`` would also stop this process's ``hf://`` weight downloads."""
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    try:
        import datasets
    except ImportError:
        raise ZooError("dataset 'hf-dataset' needs the datasets package: pip install 'zoo[hf-datasets]'") from None
    return datasets


def _data_files(path: str) -> list[Path]:
    where = Path(path).expanduser()
    if where.is_dir():
        candidates = sorted(p for p in where.rglob("*") if p.is_file())
    elif where.is_file():
        candidates = [where]
    else:
        candidates = sorted(Path(p) for p in glob.glob(str(where), recursive=True) if Path(p).is_file())
    return [p for p in candidates if p.suffix.lower() in DATA_SUFFIXES]


def _open(path: str, split: str | None):
    """The one split of the saved dataset or data files at ``path`` that ``split`` names (``None``: the default)."""
    datasets = _datasets()
    where = Path(path).expanduser()
    if where.is_dir() and (where / "dataset_dict.json").is_file():
        splits = datasets.load_from_disk(str(where))
        if split is None:
            split = "train" if "train" in splits or len(splits) != 1 else next(iter(splits))
        if split not in splits:
            raise ZooError(f"dataset 'hf-dataset': {where} has splits {sorted(splits)}, not {split!r}; "
                           "pass split=NAME")
        return splits[split]
    if where.is_dir() and (where / "state.json").is_file():
        table = datasets.load_from_disk(str(where))
        own = str(table.split) if table.split is not None else "train"
        if split not in (None, own):
            raise ZooError(f"dataset 'hf-dataset': {where} is one saved split ({own!r}), not {split!r}")
        return table
    files = _data_files(path)
    if not files:
        raise ZooError(f"dataset 'hf-dataset': {path} is no folder written by save_to_disk and holds no .parquet or "
                       ".arrow files")
    kinds = {DATA_SUFFIXES[p.suffix.lower()] for p in files}
    if len(kinds) > 1:
        raise ZooError(f"dataset 'hf-dataset': {path} mixes .parquet and .arrow files; point it at one kind")
    if split not in (None, "train"):
        raise ZooError(f"dataset 'hf-dataset': data files form one split ('train'), not {split!r}")
    from zoo.hub import cache_dir

    # load_dataset converts the files into Arrow once, into a cache of its own: keep it beside zoo's other caches.
    return datasets.load_dataset(kinds.pop(), data_files=[str(p) for p in files], split="train",
                                 cache_dir=str(cache_dir() / "hf-datasets"))


def _modality(feature, column: str, datasets) -> str:
    if isinstance(feature, datasets.Image):
        return "image"
    if isinstance(feature, datasets.Audio):
        return "audio"
    if isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string"):
        return "text"
    raise ZooError(f"dataset 'hf-dataset': column {column!r} is {feature}; zoo reads an Image, Audio or string "
                   "column")


class HFRows(Dataset):
    """Rows of a ``datasets.Dataset`` as zoo items: one column as ``image`` / ``audio`` / ``text``, plus ``label``."""

    def __init__(self, table, column: str, modality: str, label: str | None, size: int | None,
                 sample_rate: int | None, where: str):
        self.table, self.column, self.modality, self.label = table, column, modality, label
        self.size, self.sample_rate, self.where = size, sample_rate, where

    def __len__(self) -> int:
        return len(self.table)

    def _bytes(self, value, index: int) -> bytes:
        """The encoded file of a ``decode=False`` Image / Audio cell: its bytes, or the file at its path."""
        if isinstance(value, dict) and value.get("bytes") is not None:
            return value["bytes"]
        if isinstance(value, dict) and value.get("path"):
            file = Path(value["path"])
            if not file.is_file():
                raise ZooError(f"{self.where}: row {index} names the file {file}, which does not exist")
            return file.read_bytes()
        raise ZooError(f"{self.where}: row {index} of column {self.column!r} holds neither bytes nor a path")

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        row = self.table[index]
        value, where = row[self.column], f"{self.where}: row {index} ({self.column})"
        if value is None:
            raise ZooError(f"{where}: the cell is empty")
        item: dict = {}
        if self.modality == "image":
            item["image"] = decode_image(self._bytes(value, index), where, self.size)
        elif self.modality == "audio":
            item["audio"], item["sample_rate"] = decode_audio(self._bytes(value, index), where, self.sample_rate)
        else:
            item["text"] = value
        if self.label is not None:
            item["label"] = int(row[self.label])
        return item


def hf_dataset(
    path: str,
    split: str | None = None,
    column: str | None = None,
    label: str | None = None,
    limit: int | None = None,
    size: int | None = None,
    sample_rate: int | None = None,
) -> HFRows:
    """A saved HF dataset (or Parquet / Arrow files) as items; see the module docstring.

    Args:
        split: the saved split to read (default ``train``, or the only one).
        column: the column to serve (default: ``image``, ``audio`` or ``text``, the first that exists).
        label: an integer column to serve as ``label`` (default ``label`` when it exists).
        limit: the first ``limit`` rows.
        size: resize images' shorter side to ``size`` and centre-crop ``size`` x ``size``.
        sample_rate: resample audio to this rate (Hz).
    """
    for key, value, low in (("limit", limit, 0), ("size", size, 1), ("sample_rate", sample_rate, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ZooError(f"dataset 'hf-dataset': {key} must be an integer >= {low}, got {value!r}")
    datasets = _datasets()
    table = _open(str(path), split)
    features = table.features
    if column is None:
        column = next((name for name in DEFAULT_COLUMNS if name in features), None)
        if column is None:
            raise ZooError(f"dataset 'hf-dataset': {path} has no column named {', '.join(DEFAULT_COLUMNS)} (its "
                           f"columns: {', '.join(features)}); pass column=NAME")
    elif column not in features:
        raise ZooError(f"dataset 'hf-dataset': {path} has no column {column!r} (its columns: {', '.join(features)})")
    modality = _modality(features[column], column, datasets)
    if label is None:
        label = "label" if "label" in features and column != "label" else None
    elif label not in features:
        raise ZooError(f"dataset 'hf-dataset': {path} has no label column {label!r} (its columns: "
                       f"{', '.join(features)})")
    if label is not None and not (isinstance(features[label], datasets.ClassLabel) or (
            isinstance(features[label], datasets.Value) and features[label].dtype.startswith(("int", "uint")))):
        raise ZooError(f"dataset 'hf-dataset': label column {label!r} is {features[label]}; it must hold integers")
    table = table.select_columns([column] + ([label] if label is not None else []))  # read no other column
    if modality == "image":
        table = table.cast_column(column, datasets.Image(decode=False))
    elif modality == "audio":
        table = table.cast_column(column, datasets.Audio(decode=False))
    if limit is not None and limit < len(table):
        table = table.select(range(limit))
    return HFRows(table, column, modality, label, size, sample_rate, where=str(path))
