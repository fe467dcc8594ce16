"""Tokenizers from files in other formats, under zoo's contract: ``zoo.load("file:PATH")``.

=====================  ==================================================================
``*.json``             any HF ``tokenizers`` ``tokenizer.json``
``*.tiktoken``         a tiktoken BPE rank file (base64 token, rank per line); the split
                       pattern and specials come from the known OpenAI encodings by file
                       name (``cl100k_base.tiktoken``...) or from ``pattern=`` /
                       ``special_tokens=`` overrides (default: cl100k's pattern, no specials)
``*.model``            a SentencePiece model
=====================  ==================================================================

Each loads into a class that saves with ``save_pretrained`` (the file is copied into the folder)
and reloads with ``zoo.load(folder)``. Byte-level ones are lossless (``lossless`` says so); the
others keep their own normalisation, and refuse lone surrogates.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import ClassVar

from zoo.errors import ZooError
from zoo.pretrained import atomic_write_bytes
from zoo.text.base import TextTokenizer, bytes_to_text, reject_lone_surrogates
from zoo.text.bytelevel import ALPHABET, encode_keeping_surrogates, has_lone_surrogate
from zoo.text.hf import HFTokenizer

_ENDOFTEXT, _ENDOFPROMPT = "<|endoftext|>", "<|endofprompt|>"
_FIM = ("<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>")
_R50K = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
_CL100K = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]"""
    r"""|\s+(?!\S)|\s"""
)
_O200K = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
MAX_RANK = 2**31  # ids stay int32 (and inside tiktoken's u32 ranks)
# OpenAI's published encodings (tiktoken_ext/openai_public.py): split pattern and special tokens by file name.
KNOWN_TIKTOKEN: dict[str, dict] = {
    "r50k_base": {"pattern": _R50K, "special_tokens": {_ENDOFTEXT: 50256}},
    "gpt2": {"pattern": _R50K, "special_tokens": {_ENDOFTEXT: 50256}},
    "p50k_base": {"pattern": _R50K, "special_tokens": {_ENDOFTEXT: 50256}},
    "cl100k_base": {
        "pattern": _CL100K,
        "special_tokens": {_ENDOFTEXT: 100257, _FIM[0]: 100258, _FIM[1]: 100259, _FIM[2]: 100260, _ENDOFPROMPT: 100276},
    },
    "o200k_base": {"pattern": _O200K, "special_tokens": {_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018}},
}


def load_file(path: str | Path, **overrides) -> TextTokenizer:
    """A tokenizer from a ``tokenizer.json``, ``.tiktoken`` or SentencePiece ``.model`` file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ZooError(f"file:{path}: no such file (expected a tokenizer.json, .tiktoken or .model file)")
    suffix = path.suffix.lower()
    if suffix == ".json":
        tok: TextTokenizer = HFFileTokenizer(**overrides)
    elif suffix == ".tiktoken":
        known = KNOWN_TIKTOKEN.get(path.name[: -len(".tiktoken")], {}) or _export_spec(path)
        tok = TiktokenTokenizer(**{"name": path.stem, **known, **overrides})
    elif suffix == ".model":
        tok = SentencePieceTokenizer(**overrides)
    else:
        raise ZooError(f"file:{path}: unknown tokenizer format {suffix!r}; expected .json, .tiktoken or .model")
    tok.load_weights(path)
    return tok


def _export_spec(path: Path) -> dict:
    """The split pattern, specials and name a ``tiktoken.json`` beside ``path`` gives it (``zoo export --format
    tiktoken`` writes one; a rank file carries none of them), or nothing when there is no such file."""
    spec_file = path.with_name("tiktoken.json")
    if not spec_file.is_file():
        return {}
    try:
        spec = json.loads(spec_file.read_text(encoding="utf-8"))
        if spec.get("mergeable_ranks") != path.name:
            return {}  # it describes another rank file
        return {"name": str(spec["name"]), "pattern": str(spec["pat_str"]),
                "special_tokens": {str(k): v for k, v in dict(spec["special_tokens"]).items()}}
    except (OSError, AttributeError, KeyError, TypeError, ValueError) as err:
        raise ZooError(f"{spec_file}: not a tiktoken export spec ({type(err).__name__}: {err}); expected JSON with "
                       "name, pat_str, special_tokens and mergeable_ranks naming the rank file") from None


class HFFileTokenizer(HFTokenizer):
    """Any ``tokenizer.json``. Byte-level ones (no normalizer, byte-level pre-tokenizer and decoder
    without a prefix space, all 256 bytes in the vocabulary) are lossless and decode byte-exactly;
    BPE vocabularies tiktoken can run are encoded through it (``fast``)."""

    def __init__(self, fast: bool = True):
        from tokenizers import Tokenizer, models

        self.fast = fast
        self.byte_level = False
        self._set_tokenizer(Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")))

    @property
    def model_type(self) -> str:
        return json.loads(self._tk.to_str())["model"]["type"]

    def _build_untrained(self, with_specials: bool = True):
        raise ZooError("HFFileTokenizer wraps a tokenizer.json as it is; train a BPETokenizer or UnigramTokenizer")

    def _trainer(self):
        return self._build_untrained()

    def _load_weights(self, path: Path) -> None:
        from tokenizers import Tokenizer

        try:
            tk = Tokenizer.from_file(str(path))
        except Exception as err:  # the Rust side raises plain Exceptions for every parse error
            raise ZooError(f"{path}: not a tokenizers tokenizer.json ({err})") from None
        state = json.loads(tk.to_str())
        self.byte_level = _is_byte_level(state)
        if not self.byte_level:
            _refuse_dropped_bytes(state, path)
        self._set_tokenizer(tk, str(path))


def _refuse_dropped_bytes(state: dict, path: Path) -> None:
    """A byte-level pre-tokenizer over a vocabulary that lacks some of the 256 byte tokens and has no unknown token:
    ``tokenizers`` would drop those bytes from the text without a word, so the file is refused."""
    model = state.get("model", {})
    vocab = model.get("vocab", {})
    if model.get("type") != "BPE" or model.get("unk_token") is not None or not isinstance(vocab, dict):
        return
    if not any(p.get("type") == "ByteLevel" for p in _parts(state.get("pre_tokenizer"))):
        return
    missing = [b for b, c in enumerate(ALPHABET) if c not in vocab]
    if missing:
        raise ZooError(f"{path}: byte-level vocabulary lacks {len(missing)} of the 256 byte tokens (e.g. byte "
                       f"{missing[0]}) and has no unknown token: text holding them would be dropped silently")


def _parts(node: dict | None) -> list[dict]:
    """The steps of a pre-tokenizer or decoder, ``Sequence`` nodes flattened."""
    if not node:
        return []
    return [p for child in node.get("pretokenizers", node.get("decoders", [])) for p in _parts(child)] or [node]


def _is_byte_level(state: dict) -> bool:
    pre = _parts(state.get("pre_tokenizer"))
    dec = _parts(state.get("decoder"))
    vocab = state.get("model", {}).get("vocab", {})
    tokens = vocab if isinstance(vocab, dict) else {piece for piece, _ in vocab}
    return (
        state.get("normalizer") is None
        and any(p.get("type") == "ByteLevel" for p in pre)
        and [d.get("type") for d in dec] == ["ByteLevel"]
        and not any(p.get("add_prefix_space") for p in pre)  # the decoder ignores its copy of the flag
        and all(c in tokens for c in ALPHABET)
    )


class TiktokenTokenizer(TextTokenizer):
    """A tiktoken BPE from a rank file; byte-level, so lossless (specials never come out of ``encode``).

    Args:
        pattern: the pre-tokenizer split regex (fancy-regex syntax).
        special_tokens: control tokens and their ids.
        name: a label for the encoding.
    """

    weights_name: ClassVar[str] = "tokenizer.tiktoken"

    def __init__(self, pattern: str = _CL100K, special_tokens: dict[str, int] | None = None, name: str = "tiktoken"):
        self.pattern, self.special_tokens, self.name = pattern, dict(special_tokens or {}), name
        # Until a rank file is loaded: the 256 bytes at the lowest ids the specials leave free.
        free = (i for i in range(256 + len(self.special_tokens)) if i not in set(self.special_tokens.values()))
        self._adopt({bytes([b]): i for b, i in zip(range(256), free)})

    def _adopt(self, ranks: dict[bytes, int], source: str | None = None) -> None:
        import tiktoken

        source = source or self.name  # the file the ranks came from, for errors
        bad = [i for i in self.special_tokens.values() if isinstance(i, bool) or not isinstance(i, int)]
        bad += [i for i in self.special_tokens.values() if isinstance(i, int) and not 0 <= i < MAX_RANK]
        if bad or len(set(self.special_tokens.values())) < len(self.special_tokens):
            raise ZooError(
                f"{source}: special token ids must be distinct ints in [0, 2**31), got {self.special_tokens}"
            )
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise ZooError(f"{source}: ranks lack {len(missing)} single bytes (e.g. {missing[0]}); not byte-level")
        clash = set(ranks.values()) & set(self.special_tokens.values())
        if clash:
            raise ZooError(f"{source}: special token ids {sorted(clash)[:5]} are also BPE ranks")
        try:
            self._encoding = tiktoken.Encoding(
                self.name, pat_str=self.pattern, mergeable_ranks=ranks, special_tokens=self.special_tokens
            )
        except ValueError as err:
            raise ZooError(f"{source}: tiktoken refused the encoding ({err})") from None
        self._ranks = ranks
        self._byte_ids = [ranks[bytes([b])] for b in range(256)]
        self._specials = set(self.special_tokens.values())
        self._size = max([*ranks.values(), *self._specials]) + 1
        self._engine = None  # chosen on first encode: comparing 100k ranks with a shipped set is not free

    def _encoder(self):
        """The engine encode runs through: rs-bpe when the ranks and pattern are an encoding it ships and it gives
        tiktoken's ids on the probe (``zoo.text.engines.rank_engine``), else tiktoken itself."""
        if self._engine is None:
            from zoo.text.engines import rank_engine, tiktoken_engine

            reference = self._encoding.encode_ordinary
            self._engine = rank_engine(self._ranks, self.pattern, reference) or tiktoken_engine(self._encoding)
        return self._engine

    @property
    def engine(self) -> str:
        """The library encode runs through: ``rs-bpe`` or ``tiktoken``."""
        return self._encoder().name

    @property
    def vocab_size(self) -> int:
        return self._size

    def encode_one(self, text: str) -> list[int]:
        return encode_keeping_surrogates(text, self._encoder().encode, self._byte_ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        if any(has_lone_surrogate(t) for t in texts):
            return [self.encode_one(t) for t in texts]
        return self._encoder().encode_batch(texts)

    def decode_one(self, ids: list[int]) -> str:
        return bytes_to_text(b"".join(self.token_bytes(ids)))

    def token_bytes(self, ids) -> list[bytes]:
        try:
            return [b"" if i in self._specials else self._encoding.decode_single_token_bytes(i) for i in ids]
        except KeyError as err:
            raise ZooError(f"{self.name}: id {err.args[0]} is not a token of this encoding") from None

    def _has_weights(self) -> bool:
        return True

    def _save_weights(self, path: Path) -> None:
        ordered = sorted(self._ranks.items(), key=_by_rank)
        lines = [f"{base64.b64encode(token).decode()} {rank}" for token, rank in ordered]
        atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())

    def _load_weights(self, path: Path) -> None:
        # Parsed here rather than with tiktoken.load.load_tiktoken_bpe, which caches local files by path.
        # tiktoken's Rust side panics (an exception no handler expects) on a rank shared by two tokens and on
        # ranks outside 32 bits, so every line is checked first.
        ranks: dict[bytes, int] = {}
        lines: dict[int, int] = {}  # rank -> line number
        for number, line in enumerate(Path(path).read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            fields = line.split()
            try:
                token = base64.b64decode(fields[0], validate=True) if len(fields) == 2 else b""
            except ValueError:
                token = b""
            # Canonical base64 only (what tiktoken writes): "YWJj=" decodes too, but no tiktoken file holds it.
            # bytes.isdigit: ASCII 0-9 only, no sign, no "_".
            if not token or base64.b64encode(token) != fields[0] or not fields[1].isdigit():
                raise ZooError(f"{path}: line {number} is not 'BASE64TOKEN RANK': {line[:60]!r}")
            rank = int(fields[1]) if len(fields[1]) <= 10 else MAX_RANK  # int() refuses 4300+ digits itself
            if rank >= MAX_RANK:
                raise ZooError(f"{path}: line {number} has rank {fields[1][:30].decode()}; expected a rank below 2**31")
            if token in ranks:
                raise ZooError(f"{path}: line {number} repeats token {token!r} (rank {ranks[token]} already)")
            if rank in lines:
                raise ZooError(f"{path}: line {number} gives rank {rank} again (line {lines[rank]} has it)")
            ranks[token], lines[rank] = rank, number
        if not ranks:
            raise ZooError(f"{path}: holds no 'BASE64TOKEN RANK' lines; expected a tiktoken rank file")
        self._adopt(ranks, str(path))


def _by_rank(item: tuple[bytes, int]) -> int:
    return item[1]


class SentencePieceTokenizer(TextTokenizer):
    """A SentencePiece model (``.model``). Its normaliser may rewrite text (NFKC, whitespace), so it is
    not declared lossless; lone surrogates are refused."""

    weights_name: ClassVar[str] = "spm.model"
    lossless: ClassVar[bool] = False

    def __init__(self, add_bos: bool = False, add_eos: bool = False):
        self.add_bos, self.add_eos = add_bos, add_eos
        self._sp = None

    def _model(self):
        if self._sp is None:
            raise ZooError("SentencePieceTokenizer has no model loaded; use zoo.load('file:PATH.model')")
        return self._sp

    @property
    def vocab_size(self) -> int:
        return self._sp.get_piece_size() if self._sp is not None else 0

    def encode_one(self, text: str) -> list[int]:
        reject_lone_surrogates(text, "SentencePieceTokenizer")
        return self._model().encode(text, add_bos=self.add_bos, add_eos=self.add_eos)

    def decode_one(self, ids: list[int]) -> str:
        return self._model().decode(ids)

    def token_bytes(self, ids) -> list[bytes]:
        sp = self._model()
        out = []
        for i in ids:
            piece = sp.id_to_piece(i)
            if sp.is_control(i):
                out.append(b"")
            elif sp.is_byte(i):
                out.append(bytes([int(piece[3:5], 16)]))
            else:
                out.append(piece.replace("\u2581", " ").encode("utf-8"))
        return out

    def _has_weights(self) -> bool:
        return self._sp is not None

    def _save_weights(self, path: Path) -> None:
        atomic_write_bytes(path, self._model().serialized_model_proto())

    def _load_weights(self, path: Path) -> None:
        import sentencepiece

        sp = sentencepiece.SentencePieceProcessor()
        try:
            sp.load_from_serialized_proto(Path(path).read_bytes())
        except (RuntimeError, OSError, UnicodeDecodeError) as err:  # a bit flip can leave a piece non-UTF-8
            raise ZooError(f"{path}: not a SentencePiece model ({err})") from None
        self._sp = sp
