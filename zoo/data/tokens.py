"""Image datasets as token grids of a frozen tokenizer: encoded once, cached on disk, read by generators.

A token generator trains on the ids a tokenizer gives its images, and re-encoding 55k images at every
epoch (or for every generator of a study) would cost more than the generator itself. The
``image-tokens`` dataset encodes an image dataset once and keeps the ids in
``zoo.hub.cache_dir() / "tokens" / <key>.safetensors``; the key hashes the tokenizer's class, config
and **weights** (``tokenizer_fingerprint``) with the image data's spec and split, so a retrained
tokenizer never reads stale tokens and the same tokenizer on the same data never encodes twice.

Items are ``{"tokens": Long [h, w] (or [L], [h, w, q]), "label": int, "tokens_of": str}``;
``tokens_of`` is the fingerprint, so a generator can refuse tokens of another tokenizer. In a recipe::

    data: {train: {name: image-tokens, tokenizer: "stage:vq-k256", data: fashion-mnist}}
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.errors import ZooError

TOKENS_FOLDER = "tokens"
_ENCODE_BATCH = 256


def load_frozen_tokenizer(spec: str | Path | Any):
    """A tokenizer from a checkpoint folder, a registry name (pretrained when the entry ships weights) or an object;
    in eval mode with gradients off, as a generator's tokenizer must stay fixed."""
    from zoo.loading import load_tokenizer

    tokenizer = load_tokenizer(spec, frozen=True)
    if tokenizer.modality != "image":
        raise ZooError(f"tokenizer {spec!r}: a token generator needs an image tokenizer, not {tokenizer.modality}")
    if not getattr(tokenizer, "has_decoder", True):
        raise ZooError(f"tokenizer {spec!r}: {type(tokenizer).__name__} has no decoder, so its tokens cannot be "
                       "turned back into images")
    return tokenizer


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the tokenizer's class, config and weights (its state): what its tokens depend on."""
    from zoo.pretrained import target_of, weights_sha256

    record = {
        "target": target_of(type(tokenizer)),
        "config": getattr(tokenizer, "config", {}),
        "weights": weights_sha256(tokenizer),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def tokens_path(key: str) -> Path:
    from zoo.hub import cache_dir

    return cache_dir() / TOKENS_FOLDER / f"{key}.safetensors"


@torch.no_grad()
def encode_dataset(tokenizer, dataset: Dataset, batch_size: int = _ENCODE_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of ``dataset`` through ``tokenizer.encode``: ids ``[N, *grid]`` (int32) and labels ``[N]``."""
    from torch.utils.data import DataLoader

    from zoo.data import collate

    ids, labels = [], []
    device = getattr(tokenizer, "device", torch.device("cpu"))
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
        if "image" not in batch:
            raise ZooError(f"image-tokens: the data yields items with keys {sorted(batch)}, expected 'image'")
        ids.append(torch.as_tensor(tokenizer.encode(batch["image"].to(device))).to("cpu", torch.int32))
        label = batch.get("label")
        labels.append(label.long() if isinstance(label, torch.Tensor) else torch.full((len(ids[-1]),), -1))
    if not ids:
        raise ZooError("image-tokens: the image data is empty")
    return torch.cat(ids), torch.cat(labels)


class ImageTokens(Dataset):
    """Cached token grids of an image dataset (see the module docstring)."""

    def __init__(self, tokens: torch.Tensor, labels: torch.Tensor, fingerprint: str, vocab_size: int,
                 path: Path | None = None):
        self.tokens, self.labels = tokens, labels  # [N, *grid] int32, [N] long
        self.fingerprint, self.vocab_size, self.path = fingerprint, vocab_size, path

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(index)
        return {"tokens": self.tokens[index].long(), "label": int(self.labels[index]), "tokens_of": self.fingerprint}


def image_tokens(tokenizer: str, data: str | dict = "fashion-mnist", split: str = "train", seed: int = 0,
                 limit: int | None = None, batch_size: int = _ENCODE_BATCH) -> ImageTokens:
    """The ``image-tokens`` dataset: ``data`` (a dataset spec; its ``split`` / ``seed`` / ``limit`` are set from
    these options unless the spec names them) encoded by ``tokenizer`` (folder or registry name), cached."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save

    from zoo._version import __version__
    from zoo.data import load_dataset, parse_spec
    from zoo.pretrained import atomic_write_bytes

    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ZooError(f"dataset 'image-tokens': limit must be a positive integer, got {limit!r}")
    model = load_frozen_tokenizer(tokenizer)
    name, options = parse_spec(data)
    if name == "image-tokens":
        raise ZooError("dataset 'image-tokens': option 'data' must name an image dataset, not image-tokens itself")
    chosen = {"split": split, "seed": seed, **({"limit": limit} if limit is not None else {})}
    options = {**chosen, **options}
    fingerprint = tokenizer_fingerprint(model)
    key_record = {"tokenizer": fingerprint, "data": name, "options": options, "zoo_version": __version__}
    key = hashlib.sha256(json.dumps(key_record, sort_keys=True, default=str).encode()).hexdigest()[:32]
    path = tokens_path(key)
    if path.is_file():
        try:
            stored = load_file(str(path))
            return ImageTokens(stored["tokens"], stored["labels"], fingerprint, int(model.vocab_size), path)
        except (SafetensorError, OSError, KeyError):
            path.unlink(missing_ok=True)  # a corrupt cache file: drop it and rebuild below
    images = load_dataset({"name": name, **options})
    started = time.perf_counter()
    print(f"image-tokens: encoding {len(images)} images of {name} ({options.get('split')}) with "
          f"{type(model).__name__} {fingerprint[:12]}", file=sys.stderr)
    tokens, labels = encode_dataset(model, images, batch_size)
    print(f"image-tokens: {tuple(tokens.shape)} ids in {time.perf_counter() - started:.1f}s -> {path}", file=sys.stderr)
    description = json.dumps(key_record, sort_keys=True, default=str)
    atomic_write_bytes(path, save({"tokens": tokens.contiguous(), "labels": labels.contiguous()},
                                  metadata={"description": description}))
    return ImageTokens(tokens, labels, fingerprint, int(model.vocab_size), path)
