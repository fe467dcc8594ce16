"""Data mixture inference: merge-list readers, incremental pair counts, the LP, the CLI."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from zoo.analysis import SymbolTable, count_category, infer_mixture, load_bpe, log10_mse, mixture_mse, solve_mixture
from zoo.analysis.merges import merges_from_ranks, train_byte_level_bpe
from zoo.analysis.pair_counts import count_pairs_through_merges
from zoo.analysis.vocab import bytes_to_symbols, symbols_to_bytes
from zoo.errors import ZooError
from zoo.text.bytelevel import BYTE_TO_CHAR

REPO = Path(__file__).resolve().parents[2]


def _language(seed: int, alphabet: str, words: int = 300) -> list[str]:
    """A made-up language: a Zipfian lexicon of words over its own alphabet."""
    rng = random.Random(seed)
    lexicon = ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 7))) for _ in range(words)]
    weights = [1.0 / (rank + 1) for rank in range(words)]
    return lexicon, weights


def _text(language, num_words: int, seed: int) -> str:
    lexicon, weights = language
    rng = random.Random(seed)
    lines = []
    for _ in range(num_words // 10):
        lines.append(" ".join(rng.choices(lexicon, weights, k=10)))
    return "\n".join(lines) + "\n"


LANGUAGES = {
    "aeiou": _language(1, "aeioulmnr"),
    "kxz": _language(2, "kxzqwtyp"),
    "digits": _language(3, "0123456789-+"),
}


def _replay_merges(bpe, text: str) -> list[list[str]]:
    """Each pre-tokenized piece of ``text`` with ``bpe``'s merges applied in order, by hand (the reference)."""
    words = []
    for piece in bpe.pretokenize(text):
        word = list(piece)
        for left, right in bpe.merges:
            i = 0
            while i < len(word) - 1:
                if word[i] == left and word[i + 1] == right:
                    word[i : i + 2] = [left + right]
                i += 1
        words.append(word)
    return words


@pytest.fixture(scope="module")
def mixed_tokenizer(tmp_path_factory):
    """A byte-level BPE trained on 60% / 30% / 10% (by words) of three made-up languages, and fresh samples."""
    shares = {"aeiou": 6000, "kxz": 3000, "digits": 1000}
    training = {name: _text(LANGUAGES[name], words, seed=10) for name, words in shares.items()}
    tokenizer = train_byte_level_bpe(list(training.values()), merges=200)
    folder = tmp_path_factory.mktemp("mixture")
    tokenizer.save(str(folder / "tokenizer.json"))
    samples = {}
    for name in shares:
        path = folder / f"{name}.txt"
        path.write_text(_text(LANGUAGES[name], 4000, seed=20), encoding="utf-8")
        samples[name] = str(path)
    total = sum(len(t.encode()) for t in training.values())
    truth = {name: len(t.encode()) / total for name, t in training.items()}
    return folder / "tokenizer.json", samples, truth, training


def test_byte_alphabet_is_gpt2s():
    assert BYTE_TO_CHAR[ord(" ")] == "Ġ" and BYTE_TO_CHAR[ord("\n")] == "Ċ" and BYTE_TO_CHAR[ord("a")] == "a"
    assert len(set(BYTE_TO_CHAR.values())) == 256
    data = bytes(range(256))
    assert symbols_to_bytes(bytes_to_symbols(data)) == data
    assert set(BYTE_TO_CHAR.values()) == set(pre_tokenizers.ByteLevel.alphabet())
    with pytest.raises(ZooError, match="not written in the byte-level alphabet .character '中'."):
        symbols_to_bytes("Ġa中b")  # the first character no byte stands for is named


def test_pair_counts_by_hand():
    symbols = SymbolTable()
    history = count_pairs_through_merges(Counter({"aaab": 2, "ab": 1}), 9, [("a", "a"), ("aa", "a")], symbols)
    key = symbols.pair_key
    assert history.counts_before(0) == {key("a", "a"): 4, key("a", "b"): 3}
    # "aaab" -> [aa, a, b]: the left-to-right merge leaves one (a, a) pair unmerged
    assert history.counts_before(1) == {key("aa", "a"): 2, key("a", "b"): 3}
    assert history.counts_before(2) == {key("aaa", "b"): 2, key("a", "b"): 1}
    assert history.num_pairs == 7 and history.num_bytes == 9


def _recount(pieces: Counter, merges: list[tuple[str, str]], symbols: SymbolTable) -> dict[int, int]:
    """Pair counts after applying ``merges`` from scratch, the slow obvious way."""
    counts: Counter = Counter()
    for piece, freq in pieces.items():
        word = list(piece)
        for left, right in merges:
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == left and word[i + 1] == right:
                    out.append(left + right)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        for a, b in zip(word, word[1:]):
            counts[symbols.pair_key(a, b)] += freq
    return dict(counts)


def test_incremental_counts_match_recounting(mixed_tokenizer):
    path, samples, _, _ = mixed_tokenizer
    bpe = load_bpe(path)
    text = Path(samples["kxz"]).read_text()[:3000] + Path(samples["digits"]).read_text()[:3000]
    pieces = Counter(bpe.pretokenize(text))
    symbols = SymbolTable()
    history = count_pairs_through_merges(pieces, len(text), bpe.merges[:60], symbols)
    for step in (0, 1, 7, 30, 60):
        assert history.counts_before(step) == _recount(pieces, bpe.merges[:step], symbols), step


def test_merges_from_a_tokenizer_json_replay_its_encoding(mixed_tokenizer):
    """Applying the merges in order to a pre-token gives exactly the tokens HF produces."""
    path, samples, _, _ = mixed_tokenizer
    bpe = load_bpe(path)
    assert bpe.byte_level and len(bpe) == 200
    hf = Tokenizer.from_file(str(path))
    text = Path(samples["aeiou"]).read_text()[:500]
    replayed = [token for word in _replay_merges(bpe, text) for token in word]
    assert replayed == hf.encode(text).tokens


def test_tiktoken_file_merges(tmp_path):
    ranks = {bytes([b]): b for b in range(256)}
    for token in (b"ab", b"abc", b"cd", b"abcd", b" x"):
        ranks[token] = len(ranks)
    assert merges_from_ranks(ranks)[:5] == [(b"a", b"b"), (b"ab", b"c"), (b"c", b"d"), (b"abc", b"d"), (b" ", b"x")]
    path = tmp_path / "tiny.tiktoken"
    path.write_text("".join(f"{base64.b64encode(t).decode()} {r}\n" for t, r in ranks.items()))
    bpe = load_bpe(path, pattern="gpt2")
    assert bpe.merges[0] == ("a", "b") and bpe.merges[4] == ("Ġ", "x")
    assert bpe.pretokenize("abcd x, y") == ["abcd", "Ġx", ",", "Ġy"]
    with pytest.raises(ZooError, match="pattern"):
        load_bpe(path)
    ranks_with_gap = {b"a": 0, b"b": 1, b"abc": 2}
    with pytest.raises(ZooError, match="not a merge of two older tokens"):
        merges_from_ranks(ranks_with_gap)


def test_non_bpe_tokenizer_is_rejected(tmp_path):
    word_level = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    word_level.save(str(tmp_path / "tokenizer.json"))
    with pytest.raises(ZooError, match="needs a BPE"):
        load_bpe(tmp_path / "tokenizer.json")
    with pytest.raises(ZooError, match="does not exist"):
        load_bpe(tmp_path / "missing.json")


def test_training_data_itself_is_a_zero_slack_solution(mixed_tokenizer):
    """Counted on the exact training text, the true mixture violates no constraint: the LP reaches ~0."""
    path, _, truth, training = mixed_tokenizer
    bpe = load_bpe(path)
    symbols = SymbolTable()
    histories = {name: count_category([text], bpe, symbols) for name, text in training.items()}
    result = solve_mixture(histories)
    assert result.converged and result.merges_used == 200
    assert result.objective < 1e-6
    assert log10_mse(truth, result.byte_shares) < -3.5


def test_infers_a_known_mixture_from_fresh_samples(mixed_tokenizer):
    path, samples, truth, _ = mixed_tokenizer
    result = infer_mixture(path, samples)
    assert result.converged
    assert abs(sum(result.byte_shares.values()) - 1) < 1e-9
    for name, share in truth.items():
        assert abs(result.byte_shares[name] - share) < 0.06, (name, result.byte_shares, truth)
    uniform = {name: 1 / 3 for name in truth}
    assert log10_mse(truth, result.byte_shares) < log10_mse(truth, uniform) - 1


def test_mse_by_hand():
    assert mixture_mse({"a": 0.5, "b": 0.5}, {"a": 0.7, "b": 0.3}) == pytest.approx(0.04)
    with pytest.raises(ZooError, match="different categories"):
        mixture_mse({"a": 1.0}, {"b": 1.0})


def test_cli_prints_the_mixture(mixed_tokenizer):
    path, samples, truth, _ = mixed_tokenizer
    argv = [sys.executable, "-m", "zoo", "analyze", "mixture", str(path), "--merges", "150", "--json"]
    argv += [arg for name, sample in samples.items() for arg in ("--category", f"{name}={sample}")]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["merges_used"] == 150 and set(record["byte_shares"]) == set(truth)
    assert max(record["byte_shares"], key=record["byte_shares"].get) == "aeiou"


def test_cli_errors_name_the_input(mixed_tokenizer, tmp_path):
    path, samples, _, _ = mixed_tokenizer
    base = [sys.executable, "-m", "zoo", "analyze", "mixture", str(path)]
    done = subprocess.run(base + ["--category", "only=" + samples["kxz"]], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "at least two --category" in done.stderr
    done = subprocess.run(base + ["--category", "a", "--category", "b=x"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 2 and "expected NAME=PATH" in done.stderr
    done = subprocess.run(
        base + ["--category", f"a={samples['kxz']}", "--category", f"b={tmp_path / 'nope.txt'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "nope.txt" in done.stderr


def test_zoo_bpe_checkpoint_folder(tmp_path):
    """A zoo BPE saved with save_pretrained is read through its tokenizer.json; replaying its merges encodes alike."""
    from zoo.text.hf import BPETokenizer

    tokenizer = BPETokenizer(vocab_size=300, min_frequency=1)
    tokenizer.fit([_text(LANGUAGES["aeiou"], 2000, seed=5), "numbers 12345 and 678\n" * 20])
    tokenizer.save_pretrained(tmp_path / "bpe")
    bpe = load_bpe(tmp_path / "bpe")
    assert bpe.byte_level and len(bpe) > 30
    text = "numbers 12345 " + _text(LANGUAGES["aeiou"], 30, seed=6)
    vocab = {
        token: i for token, i in json.loads((tmp_path / "bpe" / "tokenizer.json").read_text())["model"]["vocab"].items()
    }
    replayed = [vocab[token] for word in _replay_merges(bpe, text) for token in word]
    assert replayed == tokenizer.encode(text)
