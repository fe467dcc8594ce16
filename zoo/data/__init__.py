"""Datasets addressed by spec strings, for recipes and suites.

A spec is a name with options, as a string or a mapping::

    "fashion-mnist"                      {"name": "fashion-mnist", "split": "test", "size": 32}
    "fashion-mnist:split=test,size=32"
    "fortunes:en"                        (a bare first value fills the builder's first option)
    "folder:/data/images"

Every dataset yields dicts: images ``{"image": [3, H, W] float in [0, 1], "label": int}``, audio
``{"audio": [T] float in [-1, 1], "label": int}`` (``sample_rate`` on the dataset), text
``{"text": str}``. ``collate`` batches them, padding audio and recording ``audio_lengths``.
Builders take ``split``, ``seed`` and ``limit`` plus their own options; splits are fixed by seed.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from zoo.errors import ZooError
from zoo.names import LazyTable

# name -> "module:builder". Builders are imported only when used, so audio code never loads for images.
DATASETS = LazyTable("dataset", {
    "fashion-mnist": "zoo.data.images:fashion_mnist",
    "photos": "zoo.data.images:photos",
    "digits": "zoo.data.images:digits",
    "image-folder": "zoo.data.images:image_folder",
    "imagefolder": "zoo.data.images:imagefolder",
    "synthetic-images": "zoo.data.synthetic:synthetic_images",
    "image-tokens": "zoo.data.tokens:image_tokens",
    "token-shards": "zoo.data.token_shards:token_shards",
    "webdataset": "zoo.data.webdataset_source:webdataset",
    "hf-dataset": "zoo.data.hf_source:hf_dataset",
    "gm-notes": "zoo.data.audio:gm_notes",
    "espeak": "zoo.data.audio:espeak",
    "espeak-phones": "zoo.data.phonemes:espeak_phones",
    "audio-transcripts": "zoo.data.phonemes:audio_transcripts",
    "audio-folder": "zoo.data.audio:audio_folder",
    "audio-mix": "zoo.data.audio:audio_mix",
    "synthetic-audio": "zoo.data.synthetic:synthetic_audio",
    "fortunes": "zoo.data.text:fortunes",
    "stdlib-code": "zoo.data.text:stdlib_code",
    "text-files": "zoo.data.text:text_files",
    "text-mix": "zoo.data.text:text_mix",
    "pycountry-parallel": "zoo.data.text:pycountry_parallel",
    "synthetic-text": "zoo.data.synthetic:synthetic_text",
    "turkish-treebank": "zoo.data.turkish:turkish_treebank",
    "adt": "zoo.data.adt:adt",
    "markov": "zoo.data.markov:markov",
    "arithmetic": "zoo.data.arithmetic:arithmetic",
})


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_spec(spec: str | dict) -> tuple[str, dict]:
    """Split a spec into its dataset name and options; positional values are kept under ``"_positional"``."""
    if isinstance(spec, dict):
        options = dict(spec)
        name = options.pop("name", None)
        if not isinstance(name, str):
            raise ZooError(f"dataset spec {spec!r}: a mapping needs a 'name' string")
        return name, options
    if not isinstance(spec, str) or not spec:
        raise ZooError(f"dataset spec must be a non-empty string or a mapping, got {spec!r}")
    name, _, rest = spec.partition(":")
    options: dict[str, Any] = {}
    positional: list[Any] = []
    if rest:
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if eq:
                options[key.strip()] = _parse_value(value.strip())
            else:
                positional.append(_parse_value(part.strip()))
    if positional:
        options["_positional"] = positional
    return name, options


def load_dataset(spec: str | dict, **overrides) -> torch.utils.data.Dataset:
    """Build the dataset a spec names; ``overrides`` (e.g. ``split="val"``) win over the spec's options."""
    name, options = parse_spec(spec)
    builder = DATASETS.load(name)
    positional = options.pop("_positional", [])
    options.update(overrides)
    parameters = [p for p in inspect.signature(builder).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    if len(positional) > len(parameters):
        raise ZooError(f"dataset {name!r}: too many positional values {positional}")
    for parameter, value in zip(parameters, positional):
        options.setdefault(parameter.name, value)
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(builder).parameters.values())
    known = {p.name for p in parameters}
    unknown = sorted(set(options) - known)
    if unknown and not accepts_any:
        raise ZooError(f"dataset {name!r}: unknown option(s) {unknown}; it takes {sorted(known)}")
    return builder(**options)


def collate(items: list[dict]) -> dict:
    """Batch dataset items: stack tensors, pad 1-D audio to the longest (``audio_lengths`` records each)."""
    if not items:
        raise ZooError("collate: empty batch")
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key == "audio":
            lengths = torch.tensor([v.shape[-1] for v in values], dtype=torch.long)
            padded = torch.zeros(len(values), int(lengths.max()), dtype=values[0].dtype)
            for row, value in enumerate(values):
                padded[row, : value.shape[-1]] = value
            batch["audio"], batch["audio_lengths"] = padded, lengths
        elif isinstance(values[0], torch.Tensor):
            batch[key] = torch.stack(values)
        elif isinstance(values[0], (int, float)) and not isinstance(values[0], bool):
            batch[key] = torch.tensor(values)
        else:
            batch[key] = values
    return batch
