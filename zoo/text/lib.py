"""LiB, "Less-is-Better": a vocabulary learned by a memorizer and a forgetter, read by greedy longest match.

Jinbiao Yang, Antal van den Bosch and Stefan L. Frank, "Less is Better: A cognitively inspired
unsupervised model for language segmentation" (https://aclanthology.org/2022.cogalex-1.4/; code
https://github.com/ray306/LiB). The memory is an ordered list of chunks (index = priority) that
starts as the characters of the corpus. Each epoch reads one sampled document, sentence by
sentence, always taking the longest known chunk:

- memorizer: with probability ``memory_in`` a chunk and the one before it (or a short run of
  unknown characters, up to ``mini_gap``) become a candidate; a candidate proposed twice within an
  epoch joins the memory at the lowest priority. Chunks span spaces, so multiword units form.
- forgetter: when the longest chunk has a shorter known prefix, both readings are followed until
  their boundaries meet; the longer chunk loses if its reading has more unknowns, more chunks, or as
  many chunks with a worse summed rank. Losers move ``int(rank * update_rate) + 1`` places toward the
  tail (past the tail: forgotten), winners as far toward the head. The bottom ``memory_out`` of the
  memory goes on probation for ``life`` epochs and is forgotten unless used unambiguously.

One deviation, ``keep_chars`` (on by default): single characters are the alphabet and are never
forgotten. The reference puts them on probation like any chunk, which on a multilingual corpus
forgets most Han characters before their first use (an epoch reads one document).

Reading (``encode``) is the same greedy longest match, over bytes: ids 0-255 are the bytes (the
fallback for anything unknown, so every string is lossless, lone surrogates included), then the
multi-byte chunks by priority. It runs compiled: an Aho-Corasick automaton in leftmost-longest mode
(``ahocorasick_rs``, the Rust ``aho-corasick`` crate), never a Python loop per character. The
weights file is a ``tokenizer.json`` that ``tokenizers`` loads as it is (the vocabulary as a trie
regex split + word-level lookup, same ids, slower); zoo falls back to it when ``ahocorasick_rs`` is
not installed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from zoo.errors import ZooError
from zoo.text.base import TextTokenizer, bytes_to_text, text_to_bytes
from zoo.text.bytelevel import ALPHABET, encode_keeping_surrogates, from_byte_chars, to_byte_chars

_END = ""  # trie key marking that the path so far is a chunk


class _Memory:
    """The ordered chunk list (index = priority) with a character trie for longest / second-longest match."""

    def __init__(self, max_len: int) -> None:
        self.max_len = max_len
        self.order: list[str] = []
        self.rank: dict[str, int] = {}
        self.trie: dict = {}

    def __contains__(self, chunk: str) -> bool:
        return chunk in self.rank

    def __len__(self) -> int:
        return len(self.order)

    def append(self, chunk: str) -> None:
        node = self.trie
        for ch in chunk:
            node = node.setdefault(ch, {})
        node[_END] = True
        self.rank[chunk] = len(self.order)
        self.order.append(chunk)

    def _unlink(self, chunk: str) -> None:
        path = [self.trie]
        for ch in chunk:
            path.append(path[-1][ch])
        del path[-1][_END]
        for depth in range(len(chunk), 0, -1):  # prune branches left empty
            if path[depth]:
                break
            del path[depth - 1][chunk[depth - 1]]

    def remove_many(self, chunks: Iterable[str]) -> None:
        gone = {c for c in chunks if c in self.rank}
        for chunk in gone:
            self._unlink(chunk)
        if gone:
            self.order = [c for c in self.order if c not in gone]
            self.reindex()

    def reindex(self) -> None:
        self.rank = {chunk: i for i, chunk in enumerate(self.order)}

    def match_two(self, text: str, start: int) -> tuple[int, int]:
        """Lengths of the second-longest and longest chunks starting at ``start`` (0 when none)."""
        node, second, longest = self.trie, 0, 0
        for j in range(start, min(len(text), start + self.max_len)):
            node = node.get(text[j])
            if node is None:
                break
            if _END in node:
                second, longest = longest, j - start + 1
        return second, longest

    def move(self, chunk: str, direction: int, update_rate: float, moves_before: int) -> bool:
        """Move ``chunk`` toward the tail (+1) or head (-1) by ``int(rank * rate) + 1``; False when it
        falls off the tail (the caller forgets it). ``rank`` is as of the epoch start: each earlier move
        shifted any chunk by at most one place, so the search starts ``moves_before`` places early."""
        index = self.order.index(chunk, max(0, self.rank[chunk] - moves_before))
        step = int(index * update_rate) + 1
        if direction < 0:
            target = max(0, index - step)
            self.order[target + 1 : index + 1] = self.order[target:index]
        else:
            target = index + step
            if target >= len(self.order):
                return False
            self.order[index:target] = self.order[index + 1 : target + 1]
        self.order[target] = chunk
        self.rank[chunk] = target
        return True


class LiBTokenizer(TextTokenizer):
    """LiB vocabulary (memorizer + forgetter) with compiled greedy longest-match reading.

    Args:
        epochs: documents read during ``fit`` (sampled with replacement, seeded).
        max_len: longest chunk, in characters.
        memory_in: probability that a chunk pair is proposed for memorising.
        memory_out: bottom fraction of the memory put on probation each epoch.
        update_rate: how far a judged chunk moves, as a fraction of its rank.
        mini_gap: longest run of unknown characters memorised as a chunk.
        life: epochs a chunk on probation survives unless used unambiguously.
        keep_chars: never forget single characters (see the module docstring).
        vocab_size: keep at most this many ids (256 bytes + the best-ranked chunks); None keeps all.
        seed: sampling seed.
    """

    weights_name: ClassVar[str] = "tokenizer.json"

    def __init__(
        self,
        epochs: int = 20000,
        max_len: int = 12,
        memory_in: float = 0.25,
        memory_out: float = 0.0001,
        update_rate: float = 0.2,
        mini_gap: int = 2,
        life: int = 10,
        keep_chars: bool = True,
        vocab_size: int | None = None,
        seed: int = 0,
    ):
        if max_len < 1 or epochs < 0 or not 0 <= memory_in <= 1 or not 0 <= memory_out < 1:
            raise ZooError(
                "LiBTokenizer: need max_len >= 1, epochs >= 0, memory_in in [0, 1] and memory_out in [0, 1), "
                f"got max_len={max_len}, epochs={epochs}, memory_in={memory_in}, memory_out={memory_out}"
            )
        if vocab_size is not None and vocab_size < 256:
            raise ZooError(f"LiBTokenizer: vocab_size must be at least 256 (the byte fallback), got {vocab_size}")
        self.epochs, self.max_len, self.memory_in, self.memory_out = epochs, max_len, memory_in, memory_out
        self.update_rate, self.mini_gap, self.life, self.keep_chars = update_rate, mini_gap, life, keep_chars
        self.cap, self.seed = vocab_size, seed
        self._compile([])

    # -- the learned vocabulary --------------------------------------------------------------------
    @property
    def chunks(self) -> list[str]:
        """Multi-byte chunks in priority order (ids 256 onwards)."""
        return [bytes_to_text(b) for b in self._id_bytes[256:]]

    @property
    def vocab_size(self) -> int:
        return len(self._id_bytes)

    def _compile(self, chunks: list[str]) -> None:
        """Ids for ``chunks`` (priority order) after the 256 bytes, and the automaton that reads them."""
        id_bytes = [bytes([b]) for b in range(256)]
        seen = set(id_bytes)
        for chunk in chunks:
            raw = text_to_bytes(chunk)
            if raw not in seen:
                seen.add(raw)
                id_bytes.append(raw)
        if self.cap is not None:
            id_bytes = id_bytes[: self.cap]
        self._id_bytes = id_bytes
        self._hf = None
        try:
            import ahocorasick_rs
        except ImportError:
            self._automaton = None
        else:
            longest = ahocorasick_rs.MatchKind.LeftmostLongest
            self._automaton = ahocorasick_rs.BytesAhoCorasick(id_bytes, matchkind=longest)

    # -- reading -----------------------------------------------------------------------------------
    def encode_one(self, text: str) -> list[int]:
        if self._automaton is None:
            tk = self.hf_tokenizer
            return encode_keeping_surrogates(
                text, lambda t: tk.encode(t, add_special_tokens=False).ids, list(range(256))
            )
        # Every byte is a pattern, so leftmost-longest is the longest chunk at each position in turn.
        return [i for i, _, _ in self._automaton.find_matches_as_indexes(text_to_bytes(text))]

    def decode_one(self, ids: list[int]) -> str:
        return bytes_to_text(b"".join([self._id_bytes[i] for i in ids]))

    def token_bytes(self, ids: Iterable[int]) -> list[bytes]:
        return [self._id_bytes[i] for i in ids]

    @property
    def hf_tokenizer(self):
        """The same reader as a ``tokenizers.Tokenizer``: byte-level characters, a trie regex whose
        alternatives go deepest first (greedy longest match), then a word-level lookup."""
        if self._hf is None:
            from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

            vocab = {to_byte_chars(raw): i for i, raw in enumerate(self._id_bytes)}
            tk = Tokenizer(models.WordLevel(vocab, unk_token=ALPHABET[0]))
            tk.pre_tokenizer = pre_tokenizers.Sequence(
                [
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False, trim_offsets=False),
                    pre_tokenizers.Split(Regex(_trie_regex(vocab)), behavior="isolated"),
                ]
            )
            tk.decoder = decoders.ByteLevel()
            self._hf = tk
        return self._hf

    # -- learning ----------------------------------------------------------------------------------
    def fit(self, texts: Iterable[str]) -> None:
        """Learn the memory from documents (each split into lines, LiB's sentences), then compile it."""
        if isinstance(texts, str):
            raise ZooError("LiBTokenizer.fit: expected an iterable of documents, got one str (wrap it in a list)")
        documents = []
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise ZooError(f"LiBTokenizer.fit: document {i} is a {type(text).__name__}, expected str")
            text = text.encode("utf-8", "ignore").decode("utf-8")  # lone surrogates are not text to learn
            if text:
                documents.append(text.splitlines(keepends=True))
        if not documents:
            raise ZooError("LiBTokenizer.fit: no non-empty documents to learn from")
        self._compile(_Learner(self).run(documents))

    # -- weights -----------------------------------------------------------------------------------
    def _has_weights(self) -> bool:
        return True

    def _save_weights(self, path: Path) -> None:
        self.hf_tokenizer.save(str(path))

    def _load_weights(self, path: Path) -> None:
        try:
            state = json.loads(Path(path).read_text(encoding="utf-8"))
            vocab = state["model"]["vocab"]
            kind = state["model"]["type"]
        except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as err:
            raise ZooError(f"{path}: not a LiB tokenizer.json ({type(err).__name__}: {err})") from None
        by_id = sorted((i, token) for token, i in vocab.items())
        raws = [from_byte_chars(token) for _, token in by_id]
        if (
            kind != "WordLevel"
            or [i for i, _ in by_id] != list(range(len(by_id)))
            or raws[:256] != [bytes([b]) for b in range(256)]
            or any(raw is None for raw in raws)
        ):
            raise ZooError(f"{path}: expected a WordLevel vocabulary of byte-level chunks with the 256 bytes first")
        cap, self.cap = self.cap, None
        self._compile([bytes_to_text(raw) for raw in raws[256:]])
        self.cap = cap


def _trie_regex(vocab: dict[str, int]) -> str:
    """An Oniguruma pattern matching, at each position, the longest vocabulary entry: a trie whose
    alternatives try the deeper branch first, optional past nodes that end an entry."""
    trie: dict = {}
    for token in vocab:
        node = trie
        for ch in token:
            node = node.setdefault(ch, {})
        node[_END] = True

    def escape(ch: str) -> str:
        return ch if ch.isascii() and ch.isalnum() else f"\\x{{{ord(ch):x}}}"

    def below(node: dict) -> str:
        branches = [escape(ch) + below(child) for ch, child in node.items() if ch != _END]
        if not branches:
            return ""
        body = "(?:" + "|".join(branches) + ")"
        return body + "?" if _END in node else body

    return "|".join(escape(ch) + below(child) for ch, child in trie.items())


class _Learner:
    """One LiB training run (the memorizer, the forgetter and the probation list)."""

    def __init__(self, owner: LiBTokenizer) -> None:
        self.o = owner
        self.rng = random.Random(owner.seed)
        self.memory = _Memory(owner.max_len)
        self.probation: dict[str, int] = {}

    def run(self, documents: list[list[str]]) -> list[str]:
        for ch in sorted({ch for doc in documents for line in doc for ch in line}):
            self.memory.append(ch)
            self.watch(ch)
        for _ in range(self.o.epochs):
            self.read(documents[self.rng.randrange(len(documents))])
        return list(self.memory.order)

    def read(self, document: list[str]) -> None:
        """One epoch: read a document, collect judgements, then update the memory once."""
        judgements: list[tuple[str, int]] = []
        candidates: set[str] = set()
        for sentence in document:
            self.read_sentence(sentence, judgements, candidates)
        self.update(judgements)

    def read_sentence(self, sent: str, judgements: list, candidates: set) -> None:
        o, memory = self.o, self.memory
        pending: dict[str, list] = {}  # chunk -> [end of the alternative reading, unknowns, chunks, greedy chunks]
        last, last_known = "", False
        i = 0
        while i < len(sent):
            self.judge(pending, sent, i, judgements)
            second, longest = memory.match_two(sent, i)
            chunk = sent[i : i + longest] if longest else ""
            for test in pending.values():
                test[3].append(chunk)
            if not longest:  # an unknown character
                last = sent[i] if last_known else last + sent[i]
                last_known = False
                i += 1
                continue
            if self.rng.random() < o.memory_in:  # memorizer
                candidate = None
                if not last_known:
                    candidate = last if 0 < len(last) <= o.mini_gap else None
                elif len(last) + longest <= o.max_len:
                    candidate = last + chunk
                if candidate and candidate not in memory:
                    if candidate in candidates:
                        candidates.discard(candidate)
                        memory.append(candidate)
                    else:
                        candidates.add(candidate)
            if longest > 1 and second:  # the forgetter will compare the shorter reading
                pending[chunk] = [i + second, 0, 1, [chunk], [sent[i : i + second]]]
            else:
                self.probation.pop(chunk, None)
            last, last_known = chunk, True
            i += longest

    def judge(self, pending: dict, sent: str, position: int, judgements: list) -> None:
        """Advance each alternative reading up to ``position``; judge those whose boundary meets it."""
        memory = self.memory
        for chunk in list(pending):
            test = pending[chunk]
            end, unknowns, count, greedy, alternative = test
            while end < position:
                _, longest = memory.match_two(sent, end)
                alternative.append(sent[end : end + longest] if longest else "")
                end += longest or 1
                unknowns += 0 if longest else 1
                count += 1
            test[0], test[1], test[2] = end, unknowns, count
            if end != position:
                continue
            del pending[chunk]
            greedy_unknowns = sum(1 for c in greedy if not c)
            greedy_count = len(greedy)
            worse = greedy_unknowns > unknowns or (
                greedy_unknowns == unknowns
                and (
                    greedy_count > count
                    or (greedy_count == count and self.rank_sum(greedy) > self.rank_sum(alternative))
                )
            )
            if worse:  # the longer chunk misled the reading: push it back, pull its prefix forward
                judgements += [(chunk, +1), (alternative[0], -1)]
            else:
                judgements.append((chunk, -1))
                self.probation.pop(chunk, None)

    def watch(self, chunk: str) -> None:
        """Put a chunk on probation (single characters stay when ``keep_chars``)."""
        if len(chunk) > 1 or not self.o.keep_chars:
            self.probation.setdefault(chunk, self.o.life)

    def rank_sum(self, chunks: list[str]) -> int:
        rank = self.memory.rank
        return sum(rank[c] for c in chunks if c in rank)

    def update(self, judgements: list[tuple[str, int]]) -> None:
        """End of epoch: probation lives tick down, judged chunks move, the tail goes on probation."""
        o, memory = self.o, self.memory
        expired = [c for c, life in self.probation.items() if life <= 1]
        for chunk in list(self.probation):
            self.probation[chunk] -= 1
        for chunk in expired:
            del self.probation[chunk]
        memory.remove_many(expired)
        fell_off: list[str] = []
        for moves, (chunk, direction) in enumerate(judgements):
            if chunk in memory.rank and chunk not in fell_off:
                if not memory.move(chunk, direction, o.update_rate, moves) and (len(chunk) > 1 or not o.keep_chars):
                    fell_off.append(chunk)
        memory.remove_many(fell_off)
        memory.reindex()
        for chunk in memory.order[int((1 - o.memory_out) * len(memory)) :]:
            self.watch(chunk)
