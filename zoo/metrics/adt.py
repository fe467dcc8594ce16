"""ADT metrics ("Tokenization Matters!", https://arxiv.org/abs/2405.17067): how often a tokenizer cuts the key words
of ADT questions (``zoo.data.adt``) across their boundaries, and how much a language model's accuracy on them drops.

``adt-split-errors`` needs only the tokenizer. A key word (A or B) is *cut* when a token holding part of it also
holds a non-space character beside it (a leading space in a token, the GPT-2 convention, does not count). Per
tokenizer it reports the share of key words cut in the adversarial questions (A and B written together) and in
the clean ones (A and B apart), and ``traps``: the share of questions in which a token crosses the A|B junction,
the questions that are adversarial *for this tokenizer* (all of them, when the data was built from its own
vocabulary; on a common random set, a comparison between tokenizers).

``adt-accuracy`` needs a language model: the candidate answers ``log_likelihood(prompt, continuation)`` (natural
log; ``log_likelihoods(prompt, continuations)`` is used when present, to batch the choices), as
``zoo.generators.text_lm.TextLM`` does for the zoo's GPT and for transformers causal LMs. Each choice is scored with
the item's closing quote (so a choice that is a prefix of another gains nothing) and the highest wins, as
lm-evaluation-harness scores multiple choice. Items are grouped by the LM's own tokenizer: ``adversarial`` and
``clean`` are accuracies on the items whose junction it crosses (the traps), ``drop`` their difference, and the
``no_trap_*`` pair the same on the items whose junction it respects, the control for how much harder a joined
pair is to read whatever the segmentation.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch

from zoo.data.adt import TEMPLATES, crossing_token, token_spans, word_cut
from zoo.errors import ZooError
from zoo.metrics.base import EvalContext, Metric

_LANGS = tuple(TEMPLATES)  # fixed slots, so state sums across processes line up


def _adt_batch(ctx: EvalContext, name: str, keys: tuple[str, ...]) -> list[dict]:
    missing = [k for k in keys if k not in ctx.batch]
    if missing:
        raise ZooError(f"{name} needs ADT items (dataset 'adt'); the suite's data has no {', '.join(missing)}")
    columns = {k: ctx.batch[k].tolist() if isinstance(ctx.batch[k], torch.Tensor) else ctx.batch[k] for k in keys}
    return [{k: column[i] for k, column in columns.items()} for i in range(len(columns[keys[0]]))]


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


class SegmentationErrors(Metric):
    """Share of ADT key words the tokenizer does not segment at their boundaries (adversarial vs clean questions)."""

    name: ClassVar[str] = "adt-split-errors"
    higher_is_better: ClassVar[bool | None] = False
    modalities: ClassVar[tuple[str, ...]] = ("text",)
    keys: ClassVar[tuple[str, ...]] = ("question", "clean_question", "spans", "clean_spans", "junction", "lang")

    def __init__(self) -> None:
        super().__init__()
        # per language: [key words cut (adversarial), key words cut (clean), key words, traps, questions]
        self.add_state("counts", torch.zeros(len(_LANGS), 5, dtype=torch.float64))

    def update(self, ctx: EvalContext) -> None:
        counts = torch.zeros_like(self.counts)
        for item in _adt_batch(ctx, self.name, self.keys):
            adversarial = token_spans(ctx.tokenizer, item["question"])
            clean = token_spans(ctx.tokenizer, item["clean_question"])
            row = counts[_LANGS.index(item["lang"])]
            row[0] += sum(word_cut(item["question"], adversarial, *span) for span in item["spans"])
            row[1] += sum(word_cut(item["clean_question"], clean, *span) for span in item["clean_spans"])
            row[2] += len(item["spans"])
            row[3] += crossing_token(adversarial, item["junction"]) is not None
            row[4] += 1
        self.counts = self.counts + counts

    def compute(self) -> dict[str, float]:
        cut_adversarial, cut_clean, words, traps, questions = self.counts.sum(0).tolist()
        if not questions:
            raise ZooError("adt-split-errors: no ADT question was seen")
        result = {"adversarial": _ratio(cut_adversarial, words), "clean": _ratio(cut_clean, words),
                  "traps": _ratio(traps, questions)}
        for lang, row in zip(_LANGS, self.counts.tolist()):
            if row[4]:
                result[f"traps_{lang}"] = row[3] / row[4]
        return result


class ChoiceAccuracy(Metric):
    """Multiple-choice accuracy of a language model on ADT questions it is trapped by, clean vs adversarial."""

    name: ClassVar[str] = "adt-accuracy"
    higher_is_better: ClassVar[bool | None] = True
    directions: ClassVar[dict[str, bool | None]] = {"drop": False, "trap_items": None, "chance": None}
    modalities: ClassVar[tuple[str, ...]] = ("text",)
    keys: ClassVar[tuple[str, ...]] = ("question", "clean_question", "choices", "answer_index", "close", "junction")

    def __init__(self) -> None:
        super().__init__()
        # [trap, no trap] x [adversarial, clean] x [correct, total]; then [sum of 1 / choices, items]
        self.add_state("counts", torch.zeros(2, 2, 2, dtype=torch.float64))
        self.add_state("chance_sum", torch.zeros(2, dtype=torch.float64))

    @staticmethod
    def scores(lm, prompt: str, continuations: list[str]) -> list[float]:
        batched = getattr(lm, "log_likelihoods", None)
        if callable(batched):
            return [float(v) for v in batched(prompt, continuations)]
        single = getattr(lm, "log_likelihood", None)
        if not callable(single):
            raise ZooError(f"{type(lm).__name__} is no language model (it has no log_likelihood(prompt, continuation));"
                           " adt-accuracy needs one, e.g. zoo.generators.text_lm.TextLM")
        return [float(single(prompt, c)) for c in continuations]

    def update(self, ctx: EvalContext) -> None:
        lm = ctx.tokenizer
        counts = torch.zeros_like(self.counts)
        for item in _adt_batch(ctx, self.name, self.keys):
            trapped = crossing_token(token_spans(lm, item["question"]), item["junction"]) is not None
            group = 0 if trapped else 1
            continuations = [choice + item["close"] for choice in item["choices"]]
            for version, prompt in enumerate((item["question"], item["clean_question"])):
                values = self.scores(lm, prompt, continuations)
                best = max(range(len(values)), key=values.__getitem__)
                counts[group, version, 0] += best == int(item["answer_index"])
                counts[group, version, 1] += 1
            self.chance_sum = self.chance_sum + torch.tensor([1.0 / len(item["choices"]), 1.0], dtype=torch.float64)
        self.counts = self.counts + counts

    def compute(self) -> dict[str, float]:
        c = self.counts
        if not float(c[:, 0, 1].sum()):
            raise ZooError("adt-accuracy: no ADT question was seen")
        acc = [[_ratio(float(c[g, v, 0]), float(c[g, v, 1])) for v in (0, 1)] for g in (0, 1)]
        return {"adversarial": acc[0][0], "clean": acc[0][1], "drop": acc[0][1] - acc[0][0],
                "no_trap_adversarial": acc[1][0], "no_trap_clean": acc[1][1],
                "trap_items": float(c[0, 0, 1]), "chance": _ratio(*self.chance_sum.tolist())}
