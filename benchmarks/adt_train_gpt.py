"""Train the small GPT the ADT suite scores (weights/adt-gpt-bpe32k): a TextLM over ``bpe-32k`` on CPU in minutes.

    python benchmarks/adt_train_gpt.py --steps 2000 --out weights/adt-gpt-bpe32k

Training text, all from *train* splits (the suite evaluates test splits, so no test word or quote is seen):

- fortunes in English, German and Chinese (``fortunes:lang=en+de+zh,split=train``), cut into windows;
- ADT questions with their answers (``adt`` data, split ``train``: words disjoint from the test words), half of
  them random pairs and half ADT-Auto traps of ``bpe-32k``, each asked in its adversarial and its clean form.

So the model has seen the question format, and what it has to learn to answer is reading the word pair: in the
clean form the answer's token usually stands in the prompt, in the adversarial form it has to be assembled from
the trap's pieces. The loop is next-token cross-entropy (AdamW, warmup + cosine, fixed seed) on sequences that each
start at position 0, as they are scored, at chosen positions only: the answer's tokens of a question, 8 random
positions of a fortune window (the 32k-way output layer is most of the cost on a CPU). A fixed number of steps
(seeded, so a rerun gives the same weights up to floating-point differences between machines); the seconds taken
are recorded in the folder's metadata.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from zoo.data import load_dataset
from zoo.data.adt import adt
from zoo.generators.text_lm import TextLM


def training_texts(seed: int, adt_items: int) -> tuple[list[str], list[tuple[str, str]]]:
    quotes = load_dataset("fortunes", lang="en+de+zh", split="train", seed=seed).texts
    questions = []
    for source in (None, "bpe-32k"):
        for item in adt(lang="en+de+zh", tokenizer=source, items=adt_items, split="train", seed=seed):
            answer = item["answer"] + item["close"]
            questions += [(item["question"], answer), (item["clean_question"], answer)]
    return quotes, questions


def question_rows(lm: TextLM, questions: list[tuple[str, str]]) -> list[tuple[list[int], int]]:
    """Each (prompt, answer) as ids and the index where the answer's tokens start."""
    rows = []
    for prompt, answer in questions:
        head, tail = lm.encode(prompt), lm.encode(answer)
        rows.append((head + tail, len(head)))
    return rows


def batches(lm: TextLM, quotes: list[str], questions: list[tuple[str, str]], batch: int, length: int, window: int,
            seed: int):
    """Endless (ids [B, T], loss mask [B, T]): ``batch`` questions (at most ``length`` tokens) whose answer tokens
    carry the loss, then ``batch // 4`` fortune windows of ``window`` tokens with 8 positions each (the 32k-way
    softmax is the cost, so few positions)."""
    rng = np.random.default_rng(seed)
    stream = np.asarray([i for ids in lm.encode(quotes) for i in ids], dtype=np.int64)
    asked = question_rows(lm, questions)
    while True:
        rows, masks = [], []
        for k in rng.integers(0, len(asked), batch):
            ids, start = asked[k]
            rows.append(ids[:length])
            masks.append([i >= start for i in range(len(rows[-1]))])
        for s in rng.integers(0, len(stream) - window, batch // 4):
            rows.append(stream[s : s + window].tolist())
            chosen = set(rng.choice(window, 8, replace=False).tolist())
            masks.append([i in chosen for i in range(window)])
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows], dtype=torch.long)
        mask = torch.tensor([m + [False] * (width - len(m)) for m in masks], dtype=torch.bool)
        yield ids, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="weights/adt-gpt-bpe32k")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=64, help="context length (questions are cut to it)")
    parser.add_argument("--window", type=int, default=24, help="tokens per fortune window")
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--adt-items", type=int, default=2000, help="ADT questions per language and kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (on a shared 2-core machine, 2 ran ~10x "
                        "slower than 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    lm = TextLM(tokenizer="bpe-32k", gpt={"context_length": args.length, "dim": 64, "depth": args.depth, "heads": 4},
                weights_dtype="bfloat16", seed=args.seed)
    quotes, questions = training_texts(args.seed, args.adt_items)
    print(f"{len(quotes)} fortunes, {len(questions)} question texts; {sum(p.numel() for p in lm.parameters())} params")
    optimizer = torch.optim.AdamW(lm.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.95))
    started, step, loss_avg, warmup = time.perf_counter(), 0, None, 10
    for ids, mask in batches(lm, quotes, questions, args.batch, args.length, args.window, args.seed):
        if step >= args.steps:
            break
        scale = min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for group in optimizer.param_groups:
            group["lr"] = args.lr * scale
        rows, positions = mask.nonzero(as_tuple=True)
        loss = F.cross_entropy(lm.gpt_logits_at(ids, rows, positions), ids[rows, positions])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        optimizer.step()
        loss_avg = float(loss.detach()) if loss_avg is None else 0.95 * loss_avg + 0.05 * float(loss.detach())
        if step % 50 == 0:
            print(f"step {step}/{args.steps}  loss {loss_avg:.3f}  {time.perf_counter() - started:.0f}s", flush=True)
        step += 1
    lm.eval()
    metadata = {"steps": step, "seconds": round(time.perf_counter() - started, 1), "final_loss": round(loss_avg, 4),
                "recipe": "benchmarks/adt_train_gpt.py", "args": vars(args)}
    path = lm.save_pretrained(args.out, metadata=metadata)
    print(json.dumps(metadata), path)


if __name__ == "__main__":
    main()
