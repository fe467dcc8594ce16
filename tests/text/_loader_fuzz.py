"""Small valid tokenizer files, byte and structure mutations of them, and the loading contract they must keep.

The contract (``load_and_use``): a file loads and then encodes and decodes, or it is refused with a
``ZooError`` naming the file; any other exception fails. SentencePiece is C++ that could abort the whole
process, so its mutations run in a child process: ``python -m tests.text._loader_fuzz DIR EXAMPLES``.
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

from hypothesis import strategies as st

TEXT = (
    "the cat sat on the mat. the dog ate the log; 12345 cats, 678 dogs.\n"
    "héllo wörld — naïve café, 東京 and Москва 🌍\tdef f(x): return x * 2\n"
)
PROBES = ["", "the cat", "héllo 🌍 1234567\n\t", "unseen ŋ ʒ ☃ 𝄞", "a\ud800b"]


def write_valid_files(folder: Path) -> dict[str, Path]:
    """A small BPE, WordPiece and Unigram ``tokenizer.json``, a ``.tiktoken`` and a SentencePiece ``.model``."""
    import sentencepiece

    from zoo.text.hf import BPETokenizer, UnigramTokenizer, WordPieceTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    texts = [TEXT] * 5 + TEXT.split()
    files: dict[str, Path] = {}
    for name, tok in [
        ("bpe", BPETokenizer(vocab_size=300, special_tokens=("<|endoftext|>",))),
        ("wordpiece", WordPieceTokenizer(vocab_size=150)),
        ("unigram", UnigramTokenizer(vocab_size=280)),
    ]:
        tok.fit(texts)
        files[f"{name}.json"] = folder / f"{name}.json"
        tok.hf_tokenizer.save(str(files[f"{name}.json"]))
    bpe = BPETokenizer(vocab_size=300, special_tokens=())
    bpe.fit(texts)
    lines = [f"{base64.b64encode(raw).decode()} {i}" for i, raw in enumerate(bpe.token_bytes(range(bpe.vocab_size)))]
    files["ranks.tiktoken"] = folder / "ranks.tiktoken"
    files["ranks.tiktoken"].write_text("\n".join(lines) + "\n")
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=model, vocab_size=400, byte_fallback=True,
        character_coverage=1.0, model_type="unigram", minloglevel=2, hard_vocab_limit=False,
        normalization_rule_name="identity",
    )  # fmt: skip
    files["spm.model"] = folder / "spm.model"
    files["spm.model"].write_bytes(model.getvalue())
    return files


def load_and_use(path: Path) -> str:
    """Load ``file:PATH`` and use it; "ok" or the ZooError's message. Anything else raises AssertionError."""
    import zoo
    from zoo.errors import ZooError
    from zoo.text.bytelevel import has_lone_surrogate
    from zoo.text.external import HFFileTokenizer

    try:
        tok = zoo.load(f"file:{path}")
    except ZooError as err:
        assert str(path) in str(err), f"the error does not name the file: {err}"
        return str(err)
    for text in PROBES:
        try:
            ids = tok.encode(text)
        except ZooError:
            continue  # refused clearly (a lone surrogate, a character the vocabulary cannot spell)
        assert all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids), (text, ids)
        decoded = tok.decode(ids)
        if tok.lossless:
            assert decoded == text, (text, ids, decoded)
        if isinstance(tok, HFFileTokenizer) and tok.uses_tiktoken and not has_lone_surrogate(text):
            assert ids == tok.hf_tokenizer.encode(text, add_special_tokens=False).ids, text
    return "ok"


# -- mutations --------------------------------------------------------------------------------------
@st.composite
def byte_mutation(draw, data: bytes) -> bytes:
    """Truncate, flip, delete, insert, duplicate or overwrite a stretch of ``data``."""
    n = len(data)
    at = draw(st.integers(0, n))
    kind = draw(st.sampled_from(["truncate", "flip", "delete", "insert", "duplicate", "overwrite", "random"]))
    if kind == "truncate":
        return data[:at]
    if kind == "flip" and at < n:
        return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]
    if kind == "delete":
        return data[:at] + data[at + draw(st.integers(1, 64)) :]
    if kind == "duplicate":
        return data[:at] + data[at : at + draw(st.integers(1, 64))] + data[at:]
    if kind == "random":
        return draw(st.binary(max_size=256))
    stretch = draw(st.binary(min_size=1, max_size=16))
    if kind == "insert":
        return data[:at] + stretch + data[at:]
    return data[:at] + stretch + data[at + len(stretch) :]


JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.sampled_from([-1, 0, 2**31, 2**32, 2**64, 10**30, 1.5, float("inf")]),
    st.integers(-(2**40), 2**40), st.text(max_size=8), st.lists(st.integers(-3, 400), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(-3, 400), max_size=2),
)  # fmt: skip


def _containers(node, path=()):
    """Every (path, container) inside a parsed JSON value."""
    if isinstance(node, (dict, list)):
        yield path, node
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            yield from _containers(child, (*path, key))


@st.composite
def json_mutation(draw, data: bytes) -> bytes:
    """Replace, delete or duplicate one value somewhere in a tokenizer.json (the structure goes wrong)."""
    state = json.loads(data)
    containers = list(_containers(state))
    _, node = draw(st.sampled_from(containers))
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    if not keys:
        return json.dumps(state).encode()
    key = draw(st.sampled_from(keys))
    kind = draw(st.sampled_from(["replace", "delete", "duplicate"]))
    if kind == "replace":
        node[key] = draw(JSON_VALUES)
    elif kind == "delete":
        del node[key]
    elif isinstance(node, list):
        node.insert(key, node[key])
    else:
        node[draw(st.sampled_from(keys))] = node[key]  # two keys, one value (ids shared by two tokens...)
    return json.dumps(state).encode()


RANK_TEXT = st.one_of(
    st.sampled_from(["-1", "+5", "3_00", "1e3", "2.0", "٣", "0x10", "", "2147483648", "4294967296", "9" * 5000]),
    st.integers(0, 400).map(str),
)


@st.composite
def tiktoken_mutation(draw, data: bytes) -> bytes:
    """Duplicate, drop or rewrite lines of a rank file: repeated ranks or tokens, odd ranks, bad base64."""
    lines = data.decode().splitlines()
    at = draw(st.integers(0, len(lines) - 1))
    token, rank = lines[at].split()
    kind = draw(st.sampled_from(["duplicate", "drop", "rank", "token", "fields"]))
    if kind == "duplicate":
        lines.insert(draw(st.integers(0, len(lines))), lines[at])
    elif kind == "drop":
        del lines[at]
    elif kind == "rank":
        lines[at] = f"{token} {draw(RANK_TEXT)}"
    elif kind == "token":
        raw = draw(st.one_of(st.binary(max_size=6).map(lambda b: base64.b64encode(b).decode()), st.text(max_size=6)))
        lines[at] = f"{raw} {rank}"
    else:
        lines[at] = " ".join(draw(st.lists(st.sampled_from([token, rank, "x", "YQ=="]), max_size=4)))
    return ("\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


def _run_sentencepiece(folder: Path, examples: int) -> None:
    """Child process: mutate the valid .model ``examples`` times; the last file tried is kept as ``last.model``."""
    from hypothesis import HealthCheck, given, settings

    source = write_valid_files(folder)["spm.model"].read_bytes()
    target = folder / "last.model"

    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(data=byte_mutation(source))
    def mutate(data: bytes) -> None:
        target.write_bytes(data)
        load_and_use(target)

    mutate()
    print("sentencepiece mutations: all loaded or were refused clearly")


if __name__ == "__main__":
    _run_sentencepiece(Path(sys.argv[1]), int(sys.argv[2]))
