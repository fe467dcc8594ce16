"""Export a zoo text tokenizer to another library's format, checked by that library before anything is written.

``export(tok, format, out)`` writes into the folder ``out``:

=================  =====================================  ============================================================
format             files                                  loaded by
=================  =====================================  ============================================================
``hf``             ``tokenizer.json``,                    ``tokenizers.Tokenizer.from_file`` (and transformers'
                   ``tokenizer_config.json``              ``PreTrainedTokenizerFast`` / ``AutoTokenizer`` on the folder)
``tiktoken``       ``tokenizer.tiktoken`` (base64 token,  ``load_tiktoken(out)``: ``tiktoken.Encoding(**spec,
                   rank per line) and ``tiktoken.json``   mergeable_ranks=load_tiktoken_bpe(...))``
                   (``name``, ``pat_str``,
                   ``special_tokens``)
``sentencepiece``  ``tokenizer.model`` (a ModelProto)     ``sentencepiece.SentencePieceProcessor(model_file=...)``
=================  =====================================  ============================================================

What converts:

- **hf**: a ``tokenizers`` pipeline is written as it is (``bpe-32k``, ``unigram-32k``, ``lib``, any
  ``tokenizer.json``); tiktoken rank files and the byte tokenizer become a byte-level BPE whose merge list is
  rebuilt from the ranks (each token's last merge is the pair that BPE over lower ranks leaves, as in
  transformers' tiktoken converter), with ``ignore_merges`` on, the split pattern as a ``Split`` regex (rewritten
  for Oniguruma, ``oniguruma_pattern``), and the specials at their own ids. SentencePiece Unigram and BPE models
  become the same pieces at the same ids (``_hf_from_spm``).
- **tiktoken**: byte-level BPE whose ids are tiktoken ranks (the conditions of ``zoo.text.fast``: regex split
  + byte alphabet, ids rising with merge order, every token rebuilt by the merge list), tiktoken rank files,
  and the byte tokenizer (256 ranks, no merges).
- **sentencepiece**: Unigram and BPE pipelines that SentencePiece's normaliser can express (``▁`` for spaces
  through a ``Metaspace`` pre-tokenizer or Llama's ``Prepend``/``Replace`` normaliser, no normaliser or a
  precompiled / NFKC char map, optional whitespace collapsing), SentencePiece models themselves, and the byte
  tokenizer (a BPE of 256 byte pieces with byte fallback; SentencePiece needs an ``<unk>`` piece, added after the
  specials and never produced).

Everything else is refused with ``ExportRefused`` naming what the format cannot express: a byte-level
pre-tokenizer in SentencePiece, WordPiece anywhere but ``hf``, LiB's greedy longest-match chunks in BPE
formats, batch-level dynamic merges anywhere. Each export checks itself: the written files, loaded by their
own library in a temporary folder, must encode ``check_texts()`` (the built-in probe text, fortunes in 12
languages and country names in 159 locales) to zoo's ids, else it is refused naming the first text that
differs. Files are written atomically, only after the check.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from zoo.errors import ZooError
from zoo.pretrained import atomic_write_bytes
from zoo.text.bytelevel import to_byte_chars

FORMATS = ("hf", "tiktoken", "sentencepiece")
BYTE_PATTERN = r"[\s\S]"  # the byte tokenizer in tiktoken: one piece per character, no merges
_SPACE = "\u2581"  # SentencePiece's whitespace symbol


class ExportRefused(ZooError):
    """The format cannot express this tokenizer (``reason`` says what), or its export would change the ids."""

    def __init__(self, name: str, format: str, reason: str):
        self.format, self.reason = format, reason
        super().__init__(f"{name}: cannot export to {format}: {reason}")


# -- the check corpus ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def check_texts() -> tuple[str, ...]:
    """The texts every export must encode to zoo's ids: ``zoo.text.fast.PROBE`` (scripts, digits, code, odd
    whitespace, emoji), 300 fortunes of the test split in 12 languages, 2000 country names over 159 locales."""
    from zoo.data.text import fortunes, pycountry_parallel
    from zoo.text.bytelevel import PROBE

    return (PROBE, *PROBE.splitlines(), *fortunes("all", split="test", limit=300).texts,
            *pycountry_parallel(limit=2000).texts)


# -- the public API ------------------------------------------------------------------------------------------------

def export(tok, format: str, out: str | Path, *, name: str | None = None,
           texts: Sequence[str] | None = None) -> list[Path]:
    """Write ``tok`` in ``format`` into the folder ``out`` (created if missing) and return the files written.

    Raises ``ExportRefused`` when the format cannot express ``tok`` or the exported files, loaded by their own
    library, encode ``texts`` (default ``check_texts()``) to other ids than ``tok`` does; nothing is written then.
    """
    label = name or getattr(tok, "name", None) or type(tok).__name__
    files = convert(tok, format, name=label)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ZooError(f"{out}: is a file; expected a folder to write the {format} files into")
    texts = check_texts() if texts is None else texts
    with tempfile.TemporaryDirectory(prefix="zoo-export-") as tmp:
        for file, data in files.items():
            (Path(tmp) / file).write_bytes(data)
        encode = _LOADERS[format](Path(tmp), tok)
        _check_same_ids(tok, encode, texts, label, format)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for file, data in files.items():
        atomic_write_bytes(out / file, data)
        paths.append(out / file)
    return paths


def convert(tok, format: str, name: str = "zoo") -> dict[str, bytes]:
    """The files of ``tok`` in ``format`` (file name -> bytes), unchecked; ``ExportRefused`` when inexpressible."""
    if format not in FORMATS:
        raise ZooError(f"unknown export format {format!r}; expected one of {', '.join(FORMATS)}")
    if type(tok).__name__ == "DynamicMerger":
        raise ExportRefused(name, format, "dynamic tokenization merges pairs per batch, so there is no fixed "
                                          "vocabulary to write; export its base tokenizer instead")
    if getattr(tok, "modality", None) != "text" or not hasattr(tok, "encode_one"):
        raise ExportRefused(name, format, f"{type(tok).__name__} is not a text tokenizer")
    return {"hf": _hf_files, "tiktoken": _tiktoken_files, "sentencepiece": _sentencepiece_files}[format](tok, name)


def load_tiktoken(folder: str | Path):
    """The ``tiktoken.Encoding`` an exported folder holds (``tiktoken.json`` + ``tokenizer.tiktoken``)."""
    import tiktoken

    folder = Path(folder)
    try:
        spec = json.loads((folder / "tiktoken.json").read_text(encoding="utf-8"))
        # Read here, not with tiktoken.load.load_tiktoken_bpe: that caches local files by path (in
        # $TIKTOKEN_CACHE_DIR or <tmp>/data-gym-cache), so a re-export to the same folder would load stale ranks.
        lines = (folder / spec["mergeable_ranks"]).read_bytes().splitlines()
        ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in lines if line)}
        return tiktoken.Encoding(spec["name"], pat_str=spec["pat_str"], mergeable_ranks=ranks,
                                 special_tokens=spec["special_tokens"])
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ZooError(f"{folder}: not a zoo tiktoken export ({type(err).__name__}: {err}); expected tiktoken.json "
                       "with name, pat_str, special_tokens, mergeable_ranks beside the rank file") from None


# -- what each kind of tokenizer is, in ranks or pipelines ---------------------------------------------------------

def _kind(tok) -> str:
    from zoo.text.byte import ByteTokenizer
    from zoo.text.external import SentencePieceTokenizer, TiktokenTokenizer
    from zoo.text.hf import HFTokenizer
    from zoo.text.lib import LiBTokenizer

    for cls, kind in ((ByteTokenizer, "byte"), (TiktokenTokenizer, "tiktoken"), (SentencePieceTokenizer, "spm"),
                      (LiBTokenizer, "lib"), (HFTokenizer, "tokenizers")):
        if isinstance(tok, cls):
            return kind
    return "other"


def _ranks_of(tok, name: str, format: str) -> tuple[dict[bytes, int], str, dict[str, int]]:
    """``(mergeable_ranks, split pattern, specials)`` of a tokenizer that is a byte-level BPE, or refused."""
    kind = _kind(tok)
    if kind == "byte":
        if tok.add_special_tokens:
            raise ExportRefused(name, format, "this byte tokenizer wraps every text in <bos>/<eos>; "
                                              "tiktoken's encode adds no tokens")
        return {bytes([b]): b for b in range(256)}, BYTE_PATTERN, dict(tok.special_ids)
    if kind == "tiktoken":
        return dict(tok._ranks), tok.pattern, dict(tok.special_tokens)
    if kind == "lib":
        raise ExportRefused(name, format, "LiB reads its chunks by greedy longest match (chunks span spaces); "
                                          "tiktoken only runs BPE merges by rank inside regex pieces")
    if kind == "spm":
        raise ExportRefused(name, format, "a SentencePiece model normalises text (spaces to '▁', its char map) and "
                                          "scores pieces; tiktoken runs byte-level BPE on the raw text")
    if kind != "tokenizers":
        raise ExportRefused(name, format, f"{type(tok).__name__} is not a BPE over bytes")
    from zoo.text.bytelevel import split_pattern
    from zoo.text.fast import TiktokenPath, _ranks

    tk = tok.hf_tokenizer
    reason = TiktokenPath.why_not(tk)
    if reason is None:
        state = json.loads(tk.to_str())
        ranks, reason = _ranks(state["model"], tk)
    if reason is not None:
        raise ExportRefused(name, format, f"tiktoken cannot express it: {reason}")
    specials = {t.content: i for i, t in tk.get_added_tokens_decoder().items()}
    return ranks, split_pattern(state["pre_tokenizer"]), specials


def _rank_lines(ranks: dict[bytes, int]) -> bytes:
    ordered = sorted(ranks.items(), key=lambda item: item[1])
    return "".join(f"{base64.b64encode(token).decode()} {rank}\n" for token, rank in ordered).encode()


# -- tiktoken ------------------------------------------------------------------------------------------------------

def _tiktoken_files(tok, name: str) -> dict[str, bytes]:
    ranks, pattern, specials = _ranks_of(tok, name, "tiktoken")
    spec = {"name": name, "pat_str": pattern, "special_tokens": specials, "mergeable_ranks": "tokenizer.tiktoken"}
    return {"tokenizer.tiktoken": _rank_lines(ranks),
            "tiktoken.json": (json.dumps(spec, indent=2, ensure_ascii=False) + "\n").encode()}


def _load_tiktoken_check(folder: Path, tok) -> Callable[[str], list[int]]:
    return load_tiktoken(folder).encode_ordinary


# -- hf ------------------------------------------------------------------------------------------------------------

_TOKENIZER_CONFIG = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False}


def _hf_files(tok, name: str) -> dict[str, bytes]:
    kind = _kind(tok)
    if kind in ("tokenizers", "lib"):
        text = tok.hf_tokenizer.to_str()
    elif kind in ("byte", "tiktoken"):
        ranks, pattern, specials = _ranks_of(tok, name, "hf")
        text = _bpe_from_ranks(ranks, None if kind == "byte" else pattern, specials)
    elif kind == "spm":
        if tok.add_bos or tok.add_eos:
            raise ExportRefused(name, "hf", "this SentencePiece tokenizer adds <s>/</s> on every encode; the "
                                            "tokenizer.json would need a post-processor zoo does not write")
        text = _hf_from_spm(tok._model().serialized_model_proto(), name)
    else:
        raise ExportRefused(name, "hf", f"{type(tok).__name__} has no tokenizers pipeline")
    return {"tokenizer.json": text.encode(), "tokenizer_config.json": json.dumps(_TOKENIZER_CONFIG).encode()}


def _last_merge(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes] | None:
    """The two parts BPE over ranks below ``rank`` leaves of ``token`` (its last merge), None if it never gets there."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best = None
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and r < rank and (best is None or r < best[0]):
                best = (r, i)
        if best is None:
            return None
        i = best[1]
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return (parts[0], parts[1]) if len(parts) == 2 else None


# An atom followed by a possessive interval: ``\p{N}{1,3}+`` (fancy-regex, tiktoken) is one to three digits, taken
# atomically; Oniguruma (tokenizers) reads ``{1,3}+`` as "one or more runs of one to three", so it is rewritten as
# the atomic group ``(?>\p{N}{1,3})``, which both engines read alike. ``++``, ``*+``, ``?+`` mean the same in both.
_POSSESSIVE_INTERVAL = re.compile(r"(\\[pP]\{[^}]*\}|\\.|\[(?:\\.|[^\]\\])*\]|[^\\()\[\]|])(\{\d+(?:,\d*)?\})\+")


def oniguruma_pattern(pattern: str) -> str:
    """A tiktoken split pattern for ``tokenizers``' Oniguruma engine (possessive intervals as atomic groups)."""
    return _POSSESSIVE_INTERVAL.sub(r"(?>\1\2)", pattern)


def _bpe_from_ranks(ranks: dict[bytes, int], pattern: str | None, specials: dict[str, int]) -> str:
    """A ``tokenizer.json`` byte-level BPE with tiktoken's ranks as ids (module docstring)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) > 1 and (pair := _last_merge(token, rank, ranks)) is not None:
            merges.append((to_byte_chars(pair[0]), to_byte_chars(pair[1])))
    vocab = {to_byte_chars(token): rank for token, rank in ranks.items()}
    vocab.update(specials)  # in the model's vocabulary too, or tokenizers renumbers them after it
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    tk.pre_tokenizer = byte_level if pattern is None else pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(oniguruma_pattern(pattern)), behavior="isolated", invert=False), byte_level])
    tk.decoder = decoders.ByteLevel()
    state = json.loads(tk.to_str())
    state["added_tokens"] = [{"id": i, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": False, "special": True} for content, i in sorted(specials.items(),
                                                                                             key=lambda s: s[1])]
    return Tokenizer.from_str(json.dumps(state)).to_str()


def _hf_from_spm(proto: bytes, name: str) -> str:
    """A SentencePiece Unigram or BPE model as a ``tokenizer.json``: the same pieces at the same ids, its char map as
    a ``Precompiled`` normaliser, its whitespace rules as ``Replace`` steps, ``Prepend('▁')`` for the dummy prefix,
    no pre-tokenizer (SentencePiece segments the whole normalised text); BPE merges are every split of a piece into
    two pieces, ranked by the merged piece's score (SentencePiece merges the adjacent pair whose result scores
    highest)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers

    refuse = functools.partial(ExportRefused, name, "hf")
    pb = _proto()
    model = pb.ModelProto()
    model.ParseFromString(proto)
    kinds = pb.ModelProto.SentencePiece
    trainer, norm = model.trainer_spec, model.normalizer_spec
    if trainer.model_type not in (pb.TrainerSpec.UNIGRAM, pb.TrainerSpec.BPE):
        raise refuse(f"a SentencePiece {pb.TrainerSpec.ModelType.Name(trainer.model_type)} model; tokenizer.json "
                     "export covers Unigram and BPE")
    if trainer.treat_whitespace_as_suffix or not norm.escape_whitespaces or norm.normalization_rule_tsv:
        raise refuse("whitespace as a suffix, unescaped whitespace or a custom rule table has no tokenizers form")
    user = [p.piece for p in model.pieces if p.type == kinds.USER_DEFINED]
    if user:
        raise refuse(f"user-defined pieces ({user[:3]}) are matched in the raw text before normalisation; "
                     "zoo does not write them as tokenizers added tokens")
    pieces = [(p.piece, p.score, p.type) for p in model.pieces]
    unk = next((i for i, (_, _, t) in enumerate(pieces) if t == kinds.UNKNOWN), None)
    if trainer.model_type == pb.TrainerSpec.UNIGRAM:
        core = models.Unigram([(piece, score) for piece, score, _ in pieces], unk_id=unk,
                              byte_fallback=trainer.byte_fallback)
    else:
        vocab = {piece: i for i, (piece, _, _) in enumerate(pieces)}
        normal = {piece: score for piece, score, t in pieces if t == kinds.NORMAL}
        merges = []
        for piece, score in normal.items():
            for cut in range(1, len(piece)):
                left, right = piece[:cut], piece[cut:]
                if left in normal and right in normal:
                    merges.append((-score, vocab[left], vocab[right], left, right))
        merges.sort()
        core = models.BPE(vocab=vocab, merges=[(left, right) for *_, left, right in merges],
                          unk_token=pieces[unk][0] if unk is not None else None, fuse_unk=True,
                          byte_fallback=trainer.byte_fallback)
    tk = Tokenizer(core)
    steps = []
    if norm.precompiled_charsmap:
        steps.append(normalizers.Precompiled(norm.precompiled_charsmap))
    if norm.remove_extra_whitespaces:
        steps += [normalizers.Replace(Regex("^ +| +$"), ""), normalizers.Replace(Regex(" {2,}"), " ")]
    if norm.add_dummy_prefix:
        steps.append(normalizers.Prepend(_SPACE))
    steps.append(normalizers.Replace(" ", _SPACE))
    tk.normalizer = normalizers.Sequence(steps)
    tk.decoder = decoders.Sequence([decoders.Replace(_SPACE, " "), decoders.ByteFallback(), decoders.Fuse()]
                                   + ([decoders.Strip(" ", 1, 0)] if norm.add_dummy_prefix else []))
    tk.add_special_tokens([piece for piece, _, t in pieces if t == kinds.CONTROL])
    return tk.to_str()


def _load_hf_check(folder: Path, tok) -> Callable[[str], list[int]]:
    from tokenizers import Tokenizer

    tk = Tokenizer.from_file(str(folder / "tokenizer.json"))
    specials = getattr(tok, "special_ids", None) or getattr(tok, "special_tokens", None) or {}
    moved = {token: (i, tk.token_to_id(token)) for token, i in specials.items() if tk.token_to_id(token) != i}
    if moved:
        token, (i, j) = next(iter(moved.items()))
        raise ExportRefused(getattr(tok, "name", type(tok).__name__), "hf",
                            f"tokenizers gives special token {token!r} id {j}, zoo {i}")
    return lambda text: tk.encode(text, add_special_tokens=False).ids


# -- sentencepiece -------------------------------------------------------------------------------------------------

def _sentencepiece_files(tok, name: str) -> dict[str, bytes]:
    kind = _kind(tok)
    if kind == "spm":
        return {"tokenizer.model": tok._model().serialized_model_proto()}
    if kind == "byte":
        return {"tokenizer.model": _spm_bytes(tok, name)}
    if kind == "tiktoken":
        raise ExportRefused(name, "sentencepiece", _BYTE_LEVEL_REASON)
    if kind == "lib":
        raise ExportRefused(name, "sentencepiece", "LiB reads chunks by greedy longest match across spaces; "
                                                   "SentencePiece segments by piece scores (Unigram) or merges (BPE)")
    if kind != "tokenizers":
        raise ExportRefused(name, "sentencepiece", f"{type(tok).__name__} has no pieces to write")
    return {"tokenizer.model": _spm_from_pipeline(json.loads(tok.hf_tokenizer.to_str()), tok, name)}


_BYTE_LEVEL_REASON = ("a byte-level pre-tokenizer (a regex split, then GPT-2's byte alphabet) cannot be expressed: "
                      "SentencePiece has no byte alphabet for pieces and no regex split (only '▁' for spaces and "
                      "byte fallback for unknown characters)")


def _proto():
    from sentencepiece import sentencepiece_model_pb2

    return sentencepiece_model_pb2


def _spm_bytes(tok, name: str) -> bytes:
    """The byte tokenizer as a SentencePiece BPE with no merges: every character falls back to its bytes."""
    if tok.add_special_tokens:
        raise ExportRefused(name, "sentencepiece", "this byte tokenizer wraps every text in <bos>/<eos>; a "
                                                   "SentencePiece model adds them only when the caller asks")
    pb = _proto()
    piece = pb.ModelProto.SentencePiece
    model = pb.ModelProto()
    for b in range(256):
        model.pieces.add(piece=f"<0x{b:02X}>", score=0.0, type=piece.BYTE)
    for special in sorted(tok.special_ids, key=tok.special_ids.get):
        model.pieces.add(piece=special, score=0.0, type=piece.CONTROL)
    model.pieces.add(piece="<unk>", score=0.0, type=piece.UNKNOWN)
    spec = model.trainer_spec
    spec.model_type, spec.byte_fallback, spec.vocab_size = pb.TrainerSpec.BPE, True, len(model.pieces)
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = len(model.pieces) - 1, -1, -1, -1
    _identity_normalizer(model.normalizer_spec)
    return model.SerializeToString()


def _identity_normalizer(spec) -> None:
    spec.name, spec.add_dummy_prefix, spec.remove_extra_whitespaces, spec.escape_whitespaces = (
        "identity", False, False, False)


def _flatten(node: dict | None, key: str) -> list[dict]:
    if not node:
        return []
    if node.get("type") == "Sequence":
        return [part for child in node.get(key, []) for part in _flatten(child, key)]
    return [node]


@functools.lru_cache(maxsize=1)
def _nfkc_charsmap() -> bytes:
    """SentencePiece's own NFKC char map: what its trainer compiles for ``normalization_rule_name='nfkc'``."""
    import sentencepiece

    buffer = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(["ab ba", "abc cab", "bca"] * 4), model_writer=buffer, vocab_size=8,
        model_type="char", normalization_rule_name="nfkc", hard_vocab_limit=False, minloglevel=2)
    model = _proto().ModelProto()
    model.ParseFromString(buffer.getvalue())
    return model.normalizer_spec.precompiled_charsmap


def _normalizer_spec(state: dict, name: str) -> dict:
    """SentencePiece normaliser settings equivalent to the pipeline's normaliser and pre-tokenizer, or refused."""
    refuse = functools.partial(ExportRefused, name, "sentencepiece")
    pre = _flatten(state.get("pre_tokenizer"), "pretokenizers")
    norm = _flatten(state.get("normalizer"), "normalizers")
    if any(p.get("type") == "ByteLevel" for p in pre + _flatten(state.get("decoder"), "decoders")):
        raise refuse(_BYTE_LEVEL_REASON)
    spec = {"charsmap": b"", "dummy_prefix": False, "collapse": False}
    metaspace = [p for p in pre if p.get("type") == "Metaspace"]
    others = [p["type"] for p in pre if p.get("type") not in ("Metaspace", "WhitespaceSplit")]
    if others:
        raise refuse(f"the pre-tokenizer {others[0]} cannot be expressed (SentencePiece only turns spaces into '▁')")
    if metaspace:
        meta = metaspace[0]
        if meta.get("replacement") != _SPACE:
            raise refuse(f"Metaspace replaces spaces with {meta.get('replacement')!r}; SentencePiece uses '▁'")
        scheme = meta.get("prepend_scheme", "always" if meta.get("add_prefix_space", True) else "never")
        spec["dummy_prefix"] = scheme != "never"
        spec["collapse"] = any(p.get("type") == "WhitespaceSplit" for p in pre)
    for step in norm:
        kind = step.get("type")
        if kind == "Precompiled":
            spec["charsmap"] = base64.b64decode(step.get("precompiled_charsmap") or "")
        elif kind == "NFKC":
            spec["charsmap"] = _nfkc_charsmap()
        elif kind == "Replace" and step.get("pattern", {}).get("Regex") in (" {2,}", "^ +| +$") and step.get(
                "content") in (" ", ""):  # SentencePiece's remove_extra_whitespaces, as _hf_from_spm writes it
            spec["collapse"] = True
        elif kind == "Prepend" and step.get("prepend") == _SPACE and not metaspace:
            spec["dummy_prefix"] = True  # Llama-style: Prepend('▁') then Replace(' ', '▁')
        elif kind == "Replace" and step.get("pattern", {}).get("String") == " " and step.get("content") == _SPACE:
            metaspace = metaspace or [step]
        else:
            raise refuse(f"the normalizer {kind} ({json.dumps(step)[:80]}) has no SentencePiece equivalent")
    if not metaspace:
        raise refuse("no Metaspace pre-tokenizer or '▁' normaliser: SentencePiece always writes spaces as '▁'")
    return spec


def _spm_from_pipeline(state: dict, tok, name: str) -> bytes:
    """A ``tokenizers`` Unigram or BPE pipeline as a SentencePiece ModelProto (module docstring)."""
    model_state = state.get("model") or {}
    kind = model_state.get("type")
    refuse = functools.partial(ExportRefused, name, "sentencepiece")
    if kind == "WordPiece":
        raise refuse("SentencePiece has no WordPiece model ('##' continuations, greedy longest match per word)")
    if kind not in ("Unigram", "BPE"):
        raise refuse(f"a {kind} model; SentencePiece has Unigram and BPE")
    if model_state.get("dropout") or model_state.get("continuing_subword_prefix") or model_state.get(
            "end_of_word_suffix"):
        raise refuse("BPE dropout or subword affixes have no SentencePiece equivalent")
    norm = _normalizer_spec(state, name)
    pb = _proto()
    piece_type = pb.ModelProto.SentencePiece
    added = {t["id"]: t for t in state.get("added_tokens", [])}
    byte_fallback = bool(model_state.get("byte_fallback"))
    if kind == "Unigram":
        table = {i: (piece, float(score)) for i, (piece, score) in enumerate(model_state["vocab"])}
        unk = model_state.get("unk_id")
    else:
        merged = {left + right: k for k, (left, right) in enumerate(
            m if isinstance(m, list) else m.split(" ", 1) for m in model_state.get("merges", []))}
        n = len(merged)
        # SentencePiece's BPE merges the adjacent pair whose result scores highest: merge k scores -k.
        table = {i: (piece, float(-merged[piece]) if piece in merged else float(-n - i))
                 for piece, i in model_state["vocab"].items()}
        unk_token = model_state.get("unk_token")
        unk = model_state["vocab"].get(unk_token) if unk_token is not None else None
    for i, token in added.items():
        table.setdefault(i, (token["content"], 0.0))
    if unk is None:
        raise refuse("the model has no unknown token; SentencePiece needs one UNKNOWN piece")
    if sorted(table) != list(range(len(table))):
        raise refuse("ids are not 0..n-1 without gaps; SentencePiece ids are piece positions")
    model = pb.ModelProto()
    for i in range(len(table)):
        piece, score = table[i]
        if i == unk:
            ptype = piece_type.UNKNOWN
        elif i in added:
            ptype = piece_type.CONTROL if added[i].get("special") else piece_type.USER_DEFINED
        elif byte_fallback and len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            ptype = piece_type.BYTE
        else:
            ptype = piece_type.NORMAL
        model.pieces.add(piece=piece, score=score, type=ptype)
    spec = model.trainer_spec
    spec.model_type = pb.TrainerSpec.UNIGRAM if kind == "Unigram" else pb.TrainerSpec.BPE
    spec.vocab_size, spec.byte_fallback = len(table), byte_fallback
    spec.unk_id, spec.bos_id, spec.eos_id, spec.pad_id = unk, -1, -1, -1
    spec.unk_piece = table[unk][0]
    normalizer = model.normalizer_spec
    normalizer.name = "nmt_nfkc" if norm["charsmap"] else "identity"
    normalizer.precompiled_charsmap = norm["charsmap"]
    normalizer.add_dummy_prefix, normalizer.remove_extra_whitespaces = norm["dummy_prefix"], norm["collapse"]
    normalizer.escape_whitespaces = True
    return model.SerializeToString()


def _load_spm_check(folder: Path, tok) -> Callable[[str], list[int]]:
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    add_bos, add_eos = getattr(tok, "add_bos", False), getattr(tok, "add_eos", False)
    return lambda text: sp.encode(text, add_bos=add_bos, add_eos=add_eos)


_LOADERS: dict[str, Callable[[Path, object], Callable[[str], list[int]]]] = {
    "hf": _load_hf_check, "tiktoken": _load_tiktoken_check, "sentencepiece": _load_spm_check}


# -- the check -----------------------------------------------------------------------------------------------------

def _check_same_ids(tok, encode: Callable[[str], list[int]], texts: Sequence[str], name: str, format: str) -> None:
    library = {"hf": "tokenizers", "tiktoken": "tiktoken", "sentencepiece": "sentencepiece"}[format]
    for index, text in enumerate(texts):
        want, got = tok.encode(text), list(encode(text))
        if want != got:
            at = next((k for k, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
            zoo_id = want[at] if at < len(want) else "end"
            lib_id = got[at] if at < len(got) else "end"
            raise ExportRefused(name, format, f"the exported file, loaded by {library}, encodes check text {index} "
                                              f"({text[:40]!r}) differently: first at token {at} (zoo {zoo_id}, "
                                              f"{library} {lib_id}); the format cannot express this tokenizer exactly")
