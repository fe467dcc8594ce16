"""A BPE tokenizer's ordered merge list and its pre-tokenizer, from any of the formats users hold.

``load_bpe(spec)`` accepts an HF ``tokenizer.json`` (or a folder holding one, as zoo's BPE checkpoints
do), a registry name of a zoo BPE, or a tiktoken ``.tiktoken`` file plus the regex it splits text with
(tiktoken files do not record it). Merges and pieces come back in one alphabet: the byte-level
characters of ``zoo.analysis.vocab`` for byte-level BPEs, the tokenizer's own characters otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from zoo.analysis.vocab import (
    bytes_to_symbols,
    find_tokenizer_json,
    hf_json_of_zoo_tokenizer,
    is_byte_level,
    load_zoo_tokenizer,
    read_json,
)
from zoo.errors import ZooError

TIKTOKEN_SUFFIXES = (".tiktoken", ".bpe")


@dataclass
class BPEMerges:
    """Ordered merges ``(left, right)`` and the function that cuts text into the pieces they apply within."""

    merges: list[tuple[str, str]]
    pretokenize: Callable[[str], list[str]]
    source: str
    byte_level: bool

    def __len__(self) -> int:
        return len(self.merges)


def train_byte_level_bpe(texts: list[str], merges: int):
    """A byte-level BPE (GPT-2 style, no prefix space) with ``merges`` merges learnt from ``texts`` by HF
    tokenizers: the reference tokenizers the analysis benchmarks and tests infer mixtures from."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=256 + merges, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def load_bpe(spec: str | Path, pattern: str | None = None) -> BPEMerges:
    """Read a BPE's merges and pre-tokenizer.

    ``pattern`` (a tiktoken encoding name such as ``cl100k_base``, or a regex) is needed for tiktoken files only.
    """
    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix == ".json":
            return bpe_from_tokenizer_json(read_json(path), source=str(path))
        return bpe_from_tiktoken(path, pattern)
    json_path = find_tokenizer_json(path)
    if json_path is not None:
        return bpe_from_tokenizer_json(read_json(json_path), source=str(json_path))
    if path.suffix in (".json", *TIKTOKEN_SUFFIXES):
        raise ZooError(f"tokenizer {str(spec)!r}: file does not exist")
    tokenizer = load_zoo_tokenizer(spec)
    data = hf_json_of_zoo_tokenizer(tokenizer)
    if data is None:
        raise ZooError(
            f"tokenizer {str(spec)!r} ({type(tokenizer).__name__}) is not a BPE built on HF tokenizers; "
            "mixture inference needs a BPE merge list (tokenizer.json or .tiktoken)"
        )
    return bpe_from_tokenizer_json(data, source=str(spec))


def bpe_from_tokenizer_json(data: dict, source: str = "tokenizer.json") -> BPEMerges:
    """Merges and pre-tokenizer of an HF ``tokenizer.json`` whose model is BPE."""
    from tokenizers import Tokenizer

    model = data["model"]
    if model.get("type") != "BPE":
        raise ZooError(f"{source}: model type is {model.get('type')!r}; mixture inference needs a BPE")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise ZooError(
                f"{source}: BPE with {key}={model[key]!r} is not supported (expected plain or byte-level BPE)"
            )
    merges = []
    for i, merge in enumerate(model.get("merges") or []):
        parts = merge.split(" ") if isinstance(merge, str) else list(merge)
        if len(parts) != 2 or not all(parts):
            raise ZooError(f"{source}: merge {i} is {merge!r}; expected two tokens")
        merges.append((parts[0], parts[1]))
    if not merges:
        raise ZooError(f"{source}: the BPE has no merges")
    tokenizer = Tokenizer.from_str(json.dumps(data))
    normalizer, pre_tokenizer = tokenizer.normalizer, tokenizer.pre_tokenizer

    def pretokenize(text: str) -> list[str]:
        if normalizer is not None:
            text = normalizer.normalize_str(text)
        if pre_tokenizer is None:
            return [text] if text else []
        return [piece for piece, _ in pre_tokenizer.pre_tokenize_str(text)]

    return BPEMerges(merges, pretokenize, source, byte_level=is_byte_level(data))


def tiktoken_pattern(pattern: str) -> str:
    """The split regex of a named tiktoken encoding (``cl100k_base``...), or ``pattern`` itself if it is a regex."""
    try:
        import tiktoken_ext.openai_public as public
    except ImportError:  # pragma: no cover - tiktoken ships it
        public = None
    constructors = getattr(public, "ENCODING_CONSTRUCTORS", {}) if public else {}
    if pattern in constructors:
        # The constructors download their rank files; only the pattern is wanted, so the loaders are stubbed.
        with (
            mock.patch.object(public, "load_tiktoken_bpe", lambda *a, **k: {}),
            mock.patch.object(public, "data_gym_to_mergeable_bpe_ranks", lambda *a, **k: {}),
        ):
            return constructors[pattern]()["pat_str"]
    import regex

    try:
        regex.compile(pattern)
    except regex.error as err:
        names = ", ".join(sorted(constructors))
        raise ZooError(
            f"pattern {pattern!r} is neither a tiktoken encoding ({names}) nor a valid regex ({err})"
        ) from None
    return pattern


def merges_from_ranks(ranks: dict[bytes, int], source: str = "ranks") -> list[tuple[bytes, bytes]]:
    """Recover the merge list of a rank table: token ``t`` of rank ``r`` merges what BPE with ranks < r makes of it.

    Running BPE on ``t``'s bytes with every token older than ``t`` stops at exactly two parts, which are
    the pair that was merged into ``t`` (as in tiktoken's ``_byte_pair_merge``).
    """
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best, best_rank = -1, rank
            for i in range(len(parts) - 1):
                pair_rank = ranks.get(parts[i] + parts[i + 1])
                if pair_rank is not None and pair_rank < best_rank:
                    best, best_rank = i, pair_rank
            if best < 0:
                break
            parts[best : best + 2] = [parts[best] + parts[best + 1]]
        if len(parts) != 2 or parts[0] not in ranks or parts[1] not in ranks:
            raise ZooError(f"{source}: token {token!r} (rank {rank}) is not a merge of two older tokens")
        merges.append((parts[0], parts[1]))
    return merges


def bpe_from_tiktoken(path: Path, pattern: str | None) -> BPEMerges:
    """Merges of a ``.tiktoken`` rank file; ``pattern`` names its encoding or gives its split regex."""
    if pattern is None:
        raise ZooError(
            f"{path}: a tiktoken file does not record how it splits text; pass its pattern "
            "(an encoding name such as 'cl100k_base' or 'o200k_base', or the regex itself)"
        )
    import regex
    from tiktoken.load import load_tiktoken_bpe

    try:
        ranks = load_tiktoken_bpe(str(path))
    except (ValueError, IndexError) as err:
        raise ZooError(f"{path}: not a tiktoken rank file (lines of 'base64 rank'): {err}") from None
    merges = [(bytes_to_symbols(a), bytes_to_symbols(b)) for a, b in merges_from_ranks(ranks, str(path))]
    if not merges:
        raise ZooError(f"{path}: the rank file holds no merges")
    splitter = regex.compile(tiktoken_pattern(pattern))

    def pretokenize(text: str) -> list[str]:
        return [bytes_to_symbols(piece.encode("utf-8")) for piece in splitter.findall(text)]

    return BPEMerges(merges, pretokenize, str(path), byte_level=True)
