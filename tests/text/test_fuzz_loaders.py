"""Malformed tokenizer files: each loads and works, or is refused with a ZooError naming the file.

Mutations (truncation, flipped and inserted bytes, wrong JSON structure, repeated or odd ranks, bad
base64) of small valid files the test writes itself, plus a table of hand-made bad files and the error
each gives. SentencePiece mutations run in a child process, so an abort in its C++ fails one test with
the file that caused it instead of killing the session.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.text._loader_fuzz import byte_mutation, json_mutation, load_and_use, tiktoken_mutation, write_valid_files
from zoo.errors import ZooError

FUZZ = settings(max_examples=120, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> dict[str, Path]:
    return write_valid_files(tmp_path_factory.mktemp("valid"))


def _mutated(valid: dict[str, Path], name: str, data: bytes) -> Path:
    target = valid[name].parent / f"mutated-{name}"
    target.write_bytes(data)
    return target


def test_the_valid_files_load_and_round_trip(valid):
    for name in ("bpe.json", "wordpiece.json", "unigram.json", "ranks.tiktoken", "spm.model"):
        assert load_and_use(valid[name]) == "ok", name


@pytest.mark.parametrize("name", ["bpe.json", "wordpiece.json", "unigram.json"])
@FUZZ
@given(data=st.data())
def test_tokenizer_json_byte_mutations(valid, name, data):
    load_and_use(_mutated(valid, name, data.draw(byte_mutation(valid[name].read_bytes()))))


@pytest.mark.parametrize("name", ["bpe.json", "wordpiece.json", "unigram.json"])
@FUZZ
@given(data=st.data())
def test_tokenizer_json_structure_mutations(valid, name, data):
    load_and_use(_mutated(valid, name, data.draw(json_mutation(valid[name].read_bytes()))))


@pytest.mark.parametrize("mutation", [tiktoken_mutation, byte_mutation])
@FUZZ
@given(data=st.data())
def test_tiktoken_rank_file_mutations(valid, mutation, data):
    load_and_use(_mutated(valid, "ranks.tiktoken", data.draw(mutation(valid["ranks.tiktoken"].read_bytes()))))


def test_sentencepiece_mutations_in_a_child_process(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "tests.text._loader_fuzz", str(tmp_path), "300"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    last = tmp_path / "last.model"
    where = f"(last file tried: {last}, {last.stat().st_size if last.exists() else 0} bytes)"
    assert run.returncode == 0, f"rc {run.returncode} {where}\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "refused clearly" in run.stdout


# -- hand-made bad files ------------------------------------------------------------------------------
def _edit_json(name: str, edit):
    def build(valid: dict[str, Path]) -> bytes:
        state = json.loads(valid[name].read_text())
        edit(state)
        return json.dumps(state).encode()

    return build


def _ranks_plus(extra: str):
    return lambda valid: (valid["ranks.tiktoken"].read_text() + extra).encode()


_BYTES = "".join(f"{base64.b64encode(bytes([b])).decode()} {b}\n" for b in range(256))
_SPM_HEAD = 60  # bytes of the valid .model kept by the truncation case

_NOT_JSON = "not a tokenizers tokenizer.json "
BAD_FILES = [
    ("empty.json", lambda v: b"", "not a tokenizers tokenizer.json .EOF while parsing"),
    ("random.json", lambda v: bytes(range(256)) * 3, _NOT_JSON + ".stream did not contain valid UTF-8"),
    ("truncated.json", lambda v: v["bpe.json"].read_bytes()[:500], _NOT_JSON + ".EOF while parsing"),
    ("list.json", lambda v: b"[1, 2, 3]", "expected struct Tokenizer"),
    ("no-model.json", lambda v: b"{}", "Model missing"),
    ("nested.json", lambda v: b"[" * 100_000, "not a tokenizers tokenizer.json .(invalid type|recursion limit)"),
    ("model-type.json", _edit_json("bpe.json", lambda s: s["model"].update(type="Nope")), "did not match any variant"),
    ("string-id.json", _edit_json("wordpiece.json", lambda s: s["model"]["vocab"].update(x="seven")),
     'invalid type: string "seven", expected u32'),
    ("negative-id.json", _edit_json("wordpiece.json", lambda s: s["model"]["vocab"].update(x=-1)),
     "invalid value: integer `-1`, expected u32"),
    ("huge-id.json", _edit_json("bpe.json", lambda s: s["model"]["vocab"].update(x=2**40)),
     "invalid value: integer `1099511627776`, expected u32"),
    ("shared-id.json", _edit_json("wordpiece.json", lambda s: s["model"]["vocab"].update(zz=3)),
     "tokens '.*' and '.*' share id 3; expected one token per id"),
    ("gap.json", _edit_json("bpe.json", lambda s: s["model"]["vocab"].update(zz=5000)),
     "token 'zz' has id 5000, but the vocabulary has 301 tokens; expected ids below 602"),
    ("unknown-merge.json", _edit_json("bpe.json", lambda s: s["model"]["merges"].append(["QQ", "RR"])),
     "Token `QQ` out of vocabulary"),
    ("bad-regex.json",
     _edit_json("bpe.json", lambda s: s["pre_tokenizer"]["pretokenizers"][0]["pattern"].update(Regex="(")),
     "Oniguruma error: end pattern with unmatched parenthesis"),
    ("empty-unigram.json", _edit_json("unigram.json", lambda s: s["model"].update(vocab=[])),
     "the model's vocabulary is empty; expected at least one token"),
    ("missing-unk.json", _edit_json("unigram.json", lambda s: s["model"].update(unk_id=10**6)), "UnkIdNotInVocabulary"),
    ("byte-level-gap.json", _edit_json("bpe.json", lambda s: s["model"]["vocab"].pop("Ā")),
     "byte-level vocabulary lacks 1 of the 256 byte tokens|has id .* expected ids below"),
    ("empty.tiktoken", lambda v: b"", "holds no 'BASE64TOKEN RANK' lines; expected a tiktoken rank file"),
    ("blank.tiktoken", lambda v: b"\n \n\t\n", "holds no 'BASE64TOKEN RANK' lines"),
    ("few-bytes.tiktoken", lambda v: b"YQ== 0\n", "ranks lack 255 single bytes .e.g. 0.; not byte-level"),
    ("base64.tiktoken", _ranks_plus("!!notbase64 300\n"), "line 301 is not 'BASE64TOKEN RANK'"),
    ("unpadded.tiktoken", _ranks_plus("YWJj= 300\n"), "line 301 is not 'BASE64TOKEN RANK'"),
    ("text-rank.tiktoken", _ranks_plus("YWJj x\n"), "line 301 is not 'BASE64TOKEN RANK': b'YWJj x'"),
    ("float-rank.tiktoken", _ranks_plus("YWJj 3.0\n"), "line 301 is not 'BASE64TOKEN RANK'"),
    ("negative-rank.tiktoken", _ranks_plus("YWJj -3\n"), "line 301 is not 'BASE64TOKEN RANK'"),
    ("underscore-rank.tiktoken", _ranks_plus("YWJj 3_00\n"), "line 301 is not 'BASE64TOKEN RANK'"),
    ("arabic-digits.tiktoken", _ranks_plus("YWJj ٣٠٠\n"), "line 301 is not 'BASE64TOKEN RANK'"),
    ("three-fields.tiktoken", _ranks_plus("YWJj 300 7\n"), "line 301 is not 'BASE64TOKEN RANK'"),
    ("huge-rank.tiktoken", _ranks_plus("YWJj 99999999999999999999999\n"),
     "line 301 has rank 99999999999999999999999; expected a rank below 2..31"),
    ("int32-rank.tiktoken", _ranks_plus("YWJj 2147483648\n"), "line 301 has rank 2147483648; expected a rank below"),
    ("long-rank.tiktoken", _ranks_plus("YWJj " + "9" * 5000 + "\n"), "line 301 has rank 9{30}; expected a rank below"),
    ("shared-rank.tiktoken", _ranks_plus("YWJj 5\n"), "line 301 gives rank 5 again .line 6 has it."),
    ("repeated-token.tiktoken", _ranks_plus("YQ== 400\n"), "line 301 repeats token b'a' .rank 64 already."),
    ("gap-rank.tiktoken", lambda v: (_BYTES + "YWJj 100000\n").encode(), None),  # tiktoken allows gaps: loads
    ("non-utf8.tiktoken", lambda v: _BYTES.encode() + b"\xff\xfe 300\n", "line 257 is not 'BASE64TOKEN RANK'"),
    ("empty.model", lambda v: b"", "not a SentencePiece model .INTERNAL: unk is not defined"),
    ("text.model", lambda v: b"this is a text file\nnot a model\n",
     "not a SentencePiece model .INTERNAL: .*ParseFromArray"),
    ("json.model", lambda v: v["bpe.json"].read_bytes(), "not a SentencePiece model"),
    ("zeros.model", lambda v: bytes(1000), "not a SentencePiece model"),
    ("truncated.model", lambda v: v["spm.model"].read_bytes()[:_SPM_HEAD], "not a SentencePiece model"),
    ("non-utf8-piece.model", lambda v: _flip_a_piece(v["spm.model"].read_bytes()),
     None),  # SentencePiece keeps the bytes as a piece and the model still works
]  # fmt: skip


def _flip_a_piece(model: bytes) -> bytes:
    """The model with the first byte of its first three-letter piece made invalid UTF-8."""
    at = re.search(rb"\x0a\x03[a-z]{3}\x15", model).start() + 2  # field 1 (piece), length 3, then the score
    return model[:at] + b"\xff" + model[at + 1 :]


@pytest.mark.parametrize(("name", "build", "expected"), BAD_FILES, ids=[row[0] for row in BAD_FILES])
def test_hand_made_bad_files_give_a_clear_error(valid, tmp_path, name, build, expected):
    path = tmp_path / name
    path.write_bytes(build(valid))
    outcome = load_and_use(path)  # a ZooError naming the file, or a working tokenizer
    if expected is None:
        assert outcome == "ok"
    else:
        assert outcome != "ok", f"{name} loaded"
        assert re.search(expected, outcome), outcome


def test_a_vocabulary_without_an_unknown_token_refuses_unspellable_text(valid, tmp_path):
    import zoo

    path = tmp_path / "no-unk.json"
    state = json.loads(valid["wordpiece.json"].read_text())
    state["model"]["unk_token"] = "[NOT-THERE]"
    path.write_text(json.dumps(state))
    tok = zoo.load(f"file:{path}")
    assert tok.encode("the cat") == tok.hf_tokenizer.encode("the cat", add_special_tokens=False).ids
    with pytest.raises(ZooError, match="tokenizers could not encode the text"):
        tok.encode("☃")
    with pytest.raises(ZooError, match="tokenizers could not encode the text"):
        tok.encode(["the cat", "☃"])
