"""What speech tokens carry: phones (purity / PNMI, a probe), speakers (invariance) and their bitrate.

The data must give frame-level phone labels (``frame_phones``, 100 per second, as ``espeak-phones``
does from espeak-ng's own phoneme events). Each token is labelled with the phone sounding at the
centre of its time span: token ``i`` of a tokenizer with ``bands`` tokens per time step (BEATs'
frequency patches; k-means units over BEATs) spans time step ``i // bands`` at
``frame_rate / bands`` steps per second, otherwise step ``i`` at ``frame_rate``.

- ``phone-purity``: label purity, cluster purity and PNMI of tokens against those phones
  (``zoo.metrics.audio.purity_scores``; HuBERT's phone purity / PNMI).
- ``phone-probe``: a logistic regression from the one-hot ids in a window of ``context`` time steps on
  either side of each step to its phone, fitted on a train split, accuracy on the suite's data.
- ``speaker-invariance``: items sharing a ``text_id`` (the same text in different voices) are
  compared by token edit distance over the longer sequence's length, raw and with repeats merged
  (0 = identical tokens for every voice; unrelated sequences score near 1).
- ``entropy-bitrate``: ``frame_rate * log2(vocab_size)`` bits/s, and the unigram-entropy rate
  ``frame_rate * H(ids)`` measured on the data (what an ideal unigram coder of the ids would spend).
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from zoo.errors import ZooError
from zoo.metrics.audio import TokenPurity
from zoo.metrics.base import EvalContext, Metric

FRAME_RATE = 100.0  # frame_phones per second


def token_steps(tokenizer) -> tuple[int, float]:
    """``(bands, time steps per second)`` of a tokenizer's ids."""
    bands = int(getattr(tokenizer, "bands", 1) or 1)
    return bands, float(tokenizer.frame_rate) / bands


def token_phones(tokenizer, count: int, frame_phones) -> np.ndarray:
    """The phone of each of ``count`` tokens of one item, from its 100 Hz ``frame_phones``."""
    bands, rate = token_steps(tokenizer)
    frames = np.asarray(frame_phones, dtype=np.int64)
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    if len(frames) == 0:
        raise ZooError("speech metrics: an item has tokens but no frame_phones")
    steps = np.arange(count) // bands
    centres = ((steps + 0.5) * FRAME_RATE / rate).astype(np.int64)
    return frames[np.clip(centres, 0, len(frames) - 1)]


def _frame_phones(batch: dict, what: str) -> list:
    if "frame_phones" not in batch:
        raise ZooError(f"{what}: the data gives no 'frame_phones' (keys: {sorted(batch)}); use espeak-phones")
    return batch["frame_phones"]


def labelled_tokens(tokenizer, encoded, frame_phones: list) -> tuple[np.ndarray, np.ndarray, list]:
    """Every valid id ``[M]``, its phone ``[M]``, and the per-item id rows of a batch's ``AudioTokens``."""
    ids = encoded.ids.cpu()
    if ids.ndim == 3:
        ids = ids[..., 0]
    rows, all_ids, all_phones = [], [], []
    for row, count in enumerate(encoded.lengths.cpu().tolist()):
        item = ids[row, : int(count)].numpy()
        rows.append(item)
        all_ids.append(item)
        all_phones.append(token_phones(tokenizer, int(count), frame_phones[row]))
    return np.concatenate(all_ids) if all_ids else np.zeros(0, np.int64), \
        np.concatenate(all_phones) if all_phones else np.zeros(0, np.int64), rows


class PhonePurity(TokenPurity):
    """Phone purity, cluster purity and PNMI of tokens against frame-level phones (``TokenPurity``'s scores, with
    each token labelled by the aligned phone of its frames rather than by an item label).

    Args:
        num_labels: an upper bound on phone ids (the state is ``[num_labels, vocab_size]``).
    """

    name: ClassVar[str] = "phone-purity"

    def __init__(self, num_labels: int = 256) -> None:
        super().__init__(label_key="frame_phones", num_labels=num_labels)

    def update(self, ctx: EvalContext) -> None:
        if self.vocab_size is None:
            self.setup(ctx.tokenizer)
        ids, phones, _ = labelled_tokens(ctx.tokenizer, ctx.encoded, _frame_phones(ctx.batch, "phone purity"))
        if phones.size and (phones.min() < 0 or phones.max() >= self.num_labels):
            raise ZooError(f"phone purity: phone ids must lie in [0, {self.num_labels}); raise num_labels")
        flat = torch.from_numpy(phones * self.vocab_size + ids)
        self.joint += torch.bincount(flat, minlength=self.joint.numel()).view_as(self.joint).double()


def context_features(rows: list, vocab_size: int, context: int):
    """Sparse one-hot ids at time offsets ``-context..context`` of each time step (CSR).

    ``rows`` are per-item id arrays ``[T]`` or ``[T, bands]`` (all tokens of one time step); the result has one
    row per time step and ``(2c + 1) * bands`` blocks of ``vocab_size + 1`` columns (the last: no token there).
    """
    from scipy.sparse import csr_matrix

    rows = [np.asarray(r).reshape(len(r), -1) for r in rows]
    bands = rows[0].shape[1] if rows else 1
    width = (2 * context + 1) * bands
    blocks, total = [], 0
    for item in rows:
        n = len(item)
        padded = np.concatenate([np.full((context, bands), -1), item, np.full((context, bands), -1)])
        columns = []
        for offset in range(2 * context + 1):
            window = padded[offset : offset + n]  # [n, bands]
            base = (offset * bands + np.arange(bands)) * (vocab_size + 1)
            columns.append(np.where(window >= 0, base + window, base + vocab_size))
        if n:
            blocks.append(np.concatenate(columns, axis=1))  # [n, width]
        total += n
    if total == 0:
        return csr_matrix((0, width * (vocab_size + 1)))
    indices = np.concatenate(blocks).reshape(-1)
    indptr = np.arange(0, total * width + 1, width)
    return csr_matrix((np.ones(total * width, np.float32), indices, indptr), shape=(total, width * (vocab_size + 1)))


def time_steps(tokenizer, rows: list, phones: np.ndarray) -> tuple[list, np.ndarray]:
    """Per-item ids as ``[T, bands]`` time steps and one phone per step (the tokens of a step share it)."""
    bands = token_steps(tokenizer)[0]
    stepped, labels, start = [], [], 0
    for row in rows:
        n = len(row)
        steps = n // bands
        stepped.append(np.asarray(row[: steps * bands]).reshape(steps, bands))
        labels.append(phones[start : start + steps * bands : bands])
        start += n
    return stepped, np.concatenate(labels) if labels else np.zeros(0, np.int64)


class PhoneProbe(Metric):
    """Phone recognition per time step from the ids in a window of steps (a logistic regression fitted on ``train``).

    A time step holds one token, or ``bands`` tokens for patch tokenizers (BEATs: the 8 bands of 160 ms).

    Args:
        train: dataset spec of the labelled train split (it must give ``frame_phones``).
        context: time steps on either side that the probe sees.
        limit: train items; max_frames: train steps (a seeded sample) the regression is fitted on.
    """

    name: ClassVar[str] = "phone-probe"
    higher_is_better: ClassVar[bool | None] = True
    directions: ClassVar[dict[str, bool | None]] = {"chance": None, "train_steps": None}
    modalities: ClassVar[tuple[str, ...]] = ("audio",)

    def __init__(self, train: str | dict = "espeak-phones:split=train", context: int = 2, limit: int = 200,
                 max_frames: int = 20000, batch_size: int = 16, seed: int = 0) -> None:
        super().__init__()
        self.train, self.context, self.limit, self.max_frames = train, int(context), int(limit), int(max_frames)
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.probe = None
        self.add_state("correct", torch.zeros((), dtype=torch.float64))
        self.add_state("chance_correct", torch.zeros((), dtype=torch.float64))
        self.add_state("total", torch.zeros((), dtype=torch.float64))
        self.train_steps = 0

    def _fit(self, tokenizer) -> None:
        from sklearn.linear_model import LogisticRegression

        from zoo.data import collate, load_dataset

        data = load_dataset(self.train, limit=self.limit)
        rows, phones = [], []
        for start in range(0, len(data), self.batch_size):
            batch = collate([data[i] for i in range(start, min(start + self.batch_size, len(data)))])
            encoded = tokenizer.encode(batch["audio"], lengths=batch["audio_lengths"])
            _, item_phones, item_rows = labelled_tokens(tokenizer, encoded, _frame_phones(batch, "phone probe"))
            item_rows, item_phones = time_steps(tokenizer, item_rows, item_phones)
            rows += item_rows
            phones.append(item_phones)
        features, labels = context_features(rows, int(tokenizer.vocab_size), self.context), np.concatenate(phones)
        if len(labels) > self.max_frames:
            keep = np.sort(np.random.default_rng(self.seed).permutation(len(labels))[: self.max_frames])
            features, labels = features[keep], labels[keep]
        if len(np.unique(labels)) < 2:
            raise ZooError("phone probe: the train split has fewer than two distinct phones")
        self.probe = LogisticRegression(max_iter=300, C=1.0).fit(features, labels)
        values, counts = np.unique(labels, return_counts=True)
        self.majority = int(values[counts.argmax()])
        self.train_steps = int(len(labels))

    def update(self, ctx: EvalContext) -> None:
        if self.probe is None:
            self._fit(ctx.tokenizer)
        _, phones, rows = labelled_tokens(ctx.tokenizer, ctx.encoded, _frame_phones(ctx.batch, "phone probe"))
        rows, phones = time_steps(ctx.tokenizer, rows, phones)
        if not len(phones):
            return
        predicted = self.probe.predict(context_features(rows, int(ctx.tokenizer.vocab_size), self.context))
        self.correct += float((predicted == phones).sum())
        self.chance_correct += float((phones == self.majority).sum())
        self.total += float(len(phones))

    def compute(self) -> dict[str, float]:
        if float(self.total) == 0:
            raise ZooError("phone probe: no labelled tokens were seen")
        return {"accuracy": float(self.correct / self.total), "chance": float(self.chance_correct / self.total),
                "train_steps": float(self.train_steps)}


def edit_distance(a, b) -> int:
    """Levenshtein distance between two id sequences (unit costs)."""
    a, b = np.asarray(a), np.asarray(b)
    previous = np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        current = np.empty_like(previous)
        current[0] = i
        substitution = previous[:-1] + (b != a[i - 1])
        deletion = previous[1:] + 1
        best = np.minimum(substitution, deletion)
        for j in range(1, len(b) + 1):  # insertion depends on the left neighbour
            current[j] = min(best[j - 1], current[j - 1] + 1)
        previous = current
    return int(previous[-1])


def merged(ids) -> np.ndarray:
    ids = np.asarray(ids)
    return ids[np.concatenate([[True], ids[1:] != ids[:-1]])] if len(ids) else ids


class SpeakerInvariance(Metric):
    """Token edit distance between the same text spoken by different voices (items sharing ``text_id``)."""

    name: ClassVar[str] = "speaker-invariance"
    higher_is_better: ClassVar[bool | None] = False
    directions: ClassVar[dict[str, bool | None]] = {"pairs": None}
    modalities: ClassVar[tuple[str, ...]] = ("audio",)

    def __init__(self) -> None:
        super().__init__()
        self.sequences: dict[int, list[np.ndarray]] = {}

    def reset(self) -> None:
        super().reset()
        self.sequences = {}

    def update(self, ctx: EvalContext) -> None:
        if "text_id" not in ctx.batch:
            raise ZooError("speaker invariance: the data gives no 'text_id'; use espeak-phones:voices_per_text=2")
        encoded = ctx.encoded
        ids = encoded.ids.cpu()
        ids = ids[..., 0] if ids.ndim == 3 else ids
        for row, text_id in enumerate(torch.as_tensor(ctx.batch["text_id"]).tolist()):
            self.sequences.setdefault(int(text_id), []).append(ids[row, : int(encoded.lengths[row])].numpy())

    def compute(self) -> dict[str, float]:
        raw, dedup = [], []
        for group in self.sequences.values():
            for i in range(len(group)):
                for j in range(i + 1, len(group)):
                    a, b = group[i], group[j]
                    raw.append(edit_distance(a, b) / max(len(a), len(b), 1))
                    ma, mb = merged(a), merged(b)
                    dedup.append(edit_distance(ma, mb) / max(len(ma), len(mb), 1))
        if not raw:
            raise ZooError("speaker invariance: no text was spoken by two voices in the data")
        return {"edit_distance": float(np.mean(raw)), "edit_distance_merged": float(np.mean(dedup)),
                "pairs": float(len(raw))}


class EntropyBitrate(Metric):
    """Nominal ``frame_rate * log2(V)`` and measured unigram-entropy bitrates (bits/s) of the ids (the harness's
    ``bitrate`` gives the measured token rate and ``log2(V)`` kbps)."""

    name: ClassVar[str] = "entropy-bitrate"
    higher_is_better: ClassVar[bool | None] = None
    modalities: ClassVar[tuple[str, ...]] = ("audio",)

    def __init__(self) -> None:
        super().__init__()
        self.vocab_size: int | None = None
        self.rate = 0.0

    def setup(self, tokenizer, data_key: str | None = None) -> None:
        self.vocab_size = int(tokenizer.vocab_size)
        self.rate = float(tokenizer.frame_rate)
        self.add_state("counts", torch.zeros(self.vocab_size, dtype=torch.float64))

    def update(self, ctx: EvalContext) -> None:
        if self.vocab_size is None:
            self.setup(ctx.tokenizer)
        ids, _, _ = labelled_tokens(ctx.tokenizer, ctx.encoded, [[0]] * len(ctx.encoded.lengths))
        self.counts += torch.bincount(torch.from_numpy(ids), minlength=self.vocab_size).double()

    def compute(self) -> dict[str, float]:
        if self.vocab_size is None or float(self.counts.sum()) == 0:
            raise ZooError("entropy bitrate: no tokens were seen")
        p = self.counts / self.counts.sum()
        entropy = float(-(p[p > 0] * p[p > 0].log2()).sum())
        return {"nominal_bps": self.rate * math.log2(self.vocab_size), "entropy_bps": self.rate * entropy,
                "tokens_per_s": self.rate}
