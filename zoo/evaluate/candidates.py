"""The tokenizers of a run: each resolved once (``zoo.loading``), labelled, and described for results.json."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.loading import resolve
from zoo.pretrained import is_run_folder_name, target_of, weights_sha256


@dataclass
class Candidate:
    label: str
    tokenizer: Any
    record: dict = field(default_factory=dict)


def resolve_candidate(item) -> Candidate:
    """A tokenizer from a registry name (pretrained when the entry ships weights), a folder, a file or an object,
    with the record ``results.json`` keeps of it (source, weights sha256, class, config)."""
    found = resolve(item)
    tokenizer = found.tokenizer
    if found.entry is not None:
        entry = found.entry
        sha = (entry.weights or {}).get("sha256") or (weights_sha256(tokenizer) if entry.weights else None)
        record = {"source": found.source, "pretrained": entry.pretrained, "weights_sha256": sha}
        label = entry.name
    elif found.folder is not None:
        record = {"source": found.source, "weights_sha256": weights_sha256(tokenizer, found.folder)}
        label = folder_label(found.folder)
    else:
        record = {"source": found.source, "weights_sha256": weights_sha256(tokenizer)}
        label = type(tokenizer).__name__ if found.source == "object" else found.source
    record.update(
        target=target_of(type(tokenizer)),
        modality=tokenizer.modality,
        vocab_size=int(tokenizer.vocab_size),
        config=getattr(tokenizer, "config", {}),
    )
    if hasattr(tokenizer, "eval"):
        tokenizer.eval()
    return Candidate(label, tokenizer, record)


def folder_label(path: Path) -> str:
    """A checkpoint folder's label: its name, with its run's name when the name alone says nothing
    (``runs/beats-tiny/ssl2/final`` -> ``ssl2/final``)."""
    if is_run_folder_name(path.name):
        return f"{path.resolve().parent.name}/{path.name}"
    return path.name


def unique_labels(candidates: list[Candidate]) -> None:
    """Suffix repeated labels (``vq-f8#2``) so every tokenizer of a run has its own column."""
    seen: dict[str, int] = {}
    for candidate in candidates:
        seen[candidate.label] = seen.get(candidate.label, 0) + 1
        if seen[candidate.label] > 1:
            candidate.label = f"{candidate.label}#{seen[candidate.label]}"
