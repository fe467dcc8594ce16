"""SentinelLMs in miniature (Mishra, Li and Deo, AAAI 2024, https://arxiv.org/abs/2312.17342): does a model adapted
with a passkey compute the same function on encrypted ids, and what does a wrong key give?

A tiny zoo GPT is trained on English fortunes with a byte-level BPE, then keyed with ``zoo.transfer.sentinel``
(row permutation + the paper's glide). Printed, as Markdown tables:

1. held-out next-token accuracy and bits per token, each as the client sees it (ids encrypted with the client's key,
   predictions decrypted with it), and the largest |logit difference| from the original on plain ids;
2. the embedding geometry after the glide: row change, pairwise-distance change, centred-row change, and the share of
   tokens an attacker with the original matrix identifies (nearest centred row), also after fine-tuning the keyed
   model on encrypted ids (the paper's flow);
3. tiny random transformers models (norm gains and biases perturbed, standing in for training): max |logit
   difference| with and without the glide.

    python benchmarks/sentinel.py --out docs/sentinel-results.md
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zoo.data import load_dataset  # noqa: E402
from zoo.generators import GPT  # noqa: E402
from zoo.pretrained import atomic_write_text  # noqa: E402
from zoo.text.hf import BPETokenizer  # noqa: E402
from zoo.text.sentinel import SentinelTokenizer  # noqa: E402
from zoo.transfer.sentinel import encrypt_gpt, encrypt_transformers, geometry_report, recovery_rate  # noqa: E402


def stream_of(tokenizer: BPETokenizer, texts: list[str]) -> torch.Tensor:
    """Documents joined by the end-of-text special (a fixed id under every key)."""
    eos = tokenizer.special_ids["<|endoftext|>"]
    ids: list[int] = []
    for row in tokenizer.encode(texts):
        ids += row + [eos]
    return torch.tensor(ids)


def train(model: GPT, stream: torch.Tensor, steps: int, args, seed: int) -> float:
    """AdamW, warmup + cosine, random windows of ``stream``; returns the last loss."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01, betas=(0.9, 0.95))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s / steps, 1))))
    )
    model.train()
    loss = torch.tensor(float("nan"))
    for step in range(steps):
        starts = torch.randint(0, len(stream) - args.context, (args.batch,), generator=generator).tolist()
        loss = model.training_losses({"ids": torch.stack([stream[s : s + args.context] for s in starts])}, step)["loss"]
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        schedule.step()
    return float(loss.detach())


@torch.no_grad()
def score(model: GPT, windows: torch.Tensor, encrypt, decrypt, reference: torch.Tensor | None = None) -> dict:
    """Client-side accuracy and bits per token on plain ``windows`` [N, T]: ``encrypt`` maps plain ids to what the
    model is fed, ``decrypt`` maps the model's output ids back (both id tables, [V]). With ``reference`` (the original
    model's logits on plain ids), also the largest |logit difference| with the output ids put back in plain order."""
    model.eval()
    logits = torch.cat([model(encrypt[chunk]) for chunk in windows.split(64)])  # [N, T, V] over the model's ids
    plain_order = logits[..., encrypt]  # column j: the logit of plain token j, as the client reads it
    predicted = decrypt[logits.argmax(-1)]
    nll = torch.nn.functional.cross_entropy(plain_order.flatten(0, 1), windows.flatten(), reduction="mean")
    out = {"accuracy": float((predicted == windows).float().mean()), "bits": float(nll) / math.log(2)}
    out["max_dlogit"] = float((plain_order - reference).abs().max()) if reference is not None else float("nan")
    return out, logits


def tables(key: SentinelTokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(key.permutation), torch.tensor(key.sentinel_key.inverse)


def lm_rows(model: GPT, bpe: BPETokenizer, windows: torch.Tensor, args) -> list[str]:
    identity = torch.arange(bpe.vocab_size)
    base, reference = score(model, windows, identity, identity)
    rows = [("original model, plain ids", base, "-")]
    configs = [("keyed", 2, True), ("keyed", 3, True), ("paper", 3, True), ("paper", 10, True), ("keyed", 3, False)]
    for scheme, steps, untie in configs:
        key = SentinelTokenizer(bpe, key=args.key, scheme=scheme, glide_steps=steps)
        keyed = encrypt_gpt(model, key, untie=untie)
        forward, back = tables(key)
        result, _ = score(keyed, windows, forward, back, reference)
        head = "untied head" if untie else "tied head, glided too"
        rows.append((f"keyed model, right key ({scheme}, T={steps}, {head})", result, "yes"))
    key = SentinelTokenizer(bpe, key=args.key, scheme="keyed", glide_steps=3)
    keyed = encrypt_gpt(model, key)
    wrong = SentinelTokenizer(bpe, key=args.wrong_key, scheme="keyed", glide_steps=3)
    forward, back = tables(key)
    wrong_forward, wrong_back = tables(wrong)
    rows.append(("keyed model, a wrong key (keyed, T=3)", score(keyed, windows, wrong_forward, wrong_back)[0], "-"))
    rows.append(("keyed model, plain ids (no key)", score(keyed, windows, identity, identity)[0], "-"))
    rows.append(("original model, encrypted ids", score(model, windows, forward, back)[0], "-"))
    counts = torch.bincount(windows.flatten(), minlength=bpe.vocab_size)
    movable = bpe.vocab_size - len(bpe.special_ids)
    lines = ["| model and ids | accuracy | bits/token | max abs logit diff vs original |", "|---|---:|---:|---:|"]
    for name, result, _ in rows:
        diff = "-" if math.isnan(result["max_dlogit"]) else f"{result['max_dlogit']:.2e}"
        lines.append(f"| {name} | {result['accuracy']:.4f} | {result['bits']:.3f} | {diff} |")
    lines.append(f"| chance: 1 / {movable} non-special ids | {1 / movable:.4f} | {math.log2(movable):.3f} | - |")
    lines.append(f"| always the most frequent token | {float(counts.max() / counts.sum()):.4f} | - | - |")
    return lines


def geometry_rows(model: GPT, bpe: BPETokenizer, train_stream: torch.Tensor, args) -> list[str]:
    plain = model.token_embedding.weight
    lines = ["| key (scheme, glide steps T) | max row change | max distance change | max centred-row change | "
             "tokens recovered |", "|---|---:|---:|---:|---:|"]
    for scheme, steps in (("keyed", 0), ("keyed", 1), ("keyed", 2), ("keyed", 3), ("paper", 3), ("paper", 10)):
        key = SentinelTokenizer(bpe, key=args.key, scheme=scheme, glide_steps=steps)
        report = geometry_report(plain, encrypt_gpt(model, key).token_embedding.weight, key)
        lines.append(f"| {scheme}, T={steps} | {report['max_row_change']:.3g} | {report['max_distance_change']:.2e} | "
                     f"{report['max_centred_change']:.2e} | {report['recovery_rate']:.4f} |")
    key = SentinelTokenizer(bpe, key=args.key, scheme="keyed", glide_steps=3)
    keyed = encrypt_gpt(model, key)
    encrypted_stream = torch.tensor(key.permutation)[train_stream]
    train(keyed, encrypted_stream, args.finetune_steps, args, seed=2)
    rate = recovery_rate(plain, keyed.token_embedding.weight, key)
    lines.append(f"| keyed, T=3, then {args.finetune_steps} steps of fine-tuning on encrypted ids | - | - | - | "
                 f"{rate:.4f} |")
    return lines


def frequency_attack(bpe: BPETokenizer, train_stream: torch.Tensor, test_stream: torch.Tensor, args) -> str:
    """Ciphertext only: rank ids by count in intercepted encrypted text, match ranks with counts of public plain text
    (the training texts here); the share of intercepted token occurrences that the guess decrypts correctly."""
    key = SentinelTokenizer(bpe, key=args.key, scheme="keyed", glide_steps=3)
    intercepted = torch.tensor(key.permutation)[test_stream]
    public = torch.bincount(train_stream, minlength=bpe.vocab_size).argsort(descending=True, stable=True)
    seen = torch.bincount(intercepted, minlength=bpe.vocab_size).argsort(descending=True, stable=True)
    guess = torch.empty_like(seen)
    guess[seen] = public  # the k-th most frequent encrypted id is read as the k-th most frequent plain id
    hits = float((guess[intercepted] == test_stream).float().mean())
    return (f"Ciphertext-only frequency analysis (no model, no embeddings): matching id frequency ranks of the "
            f"{intercepted.numel()} intercepted encrypted tokens with public plain text decrypts {hits:.1%} of the "
            "token occurrences correctly (specials included).")


def _perturb(model):
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name.lower() or ".ln_" in name:
                param.add_(0.3 * torch.randn(param.shape, generator=generator))
    return model.eval()


@torch.no_grad()
def transformers_rows(bpe: BPETokenizer, windows: torch.Tensor, args) -> list[str]:
    import transformers as tf

    vocab = bpe.vocab_size
    size = dict(vocab_size=vocab, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                max_position_embeddings=args.context)
    torch.manual_seed(0)
    models = {
        "GPT-2 (pre-norm LayerNorm, tied LM head)": tf.GPT2LMHeadModel(
            tf.GPT2Config(vocab_size=vocab, n_positions=args.context, n_embd=64, n_layer=2, n_head=4,
                          bos_token_id=0, eos_token_id=0)),
        "BERT masked LM (embedding LayerNorm, tied MLM head + bias)": tf.BertForMaskedLM(tf.BertConfig(**size)),
        "BERT sequence classifier": tf.BertForSequenceClassification(tf.BertConfig(**size, num_labels=3)),
        "Llama (RMSNorm, tied head)": tf.LlamaForCausalLM(
            tf.LlamaConfig(**size, num_key_value_heads=4, tie_word_embeddings=True, pad_token_id=0, bos_token_id=0,
                           eos_token_id=0)),
    }
    key = SentinelTokenizer(bpe, key=args.key, scheme="keyed", glide_steps=3)
    forward = torch.tensor(key.permutation)
    ids = windows[:8]
    lines = ["| transformers model | max abs logit diff, glide T=3 | max abs logit diff, permutation only | "
             "max abs logit |", "|---|---:|---:|---:|"]
    for name, model in models.items():
        model = _perturb(model)
        plain = model(input_ids=ids).logits
        diffs = []
        for transform in (True, False):
            out = encrypt_transformers(model, key, transform=transform)(input_ids=forward[ids]).logits
            if out.shape[-1] == vocab:
                out = out[..., forward]
            diffs.append(float((out - plain).abs().max()))
        lines.append(f"| {name} | {diffs[0]:.2e} | {diffs[1]:.2e} | {float(plain.abs().max()):.3g} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--train-docs", type=int, default=3000)
    parser.add_argument("--test-docs", type=int, default=300)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--finetune-steps", type=int, default=100)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--key", default="server and client share this passphrase")
    parser.add_argument("--wrong-key", default="someone else's passphrase")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the tables to this Markdown file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    started = time.time()

    train_texts = list(load_dataset("fortunes", lang="en", split="train", limit=args.train_docs).texts)
    test_texts = list(load_dataset("fortunes", lang="en", split="test", limit=args.test_docs).texts)
    bpe = BPETokenizer(vocab_size=args.vocab)
    bpe.fit(train_texts)
    train_stream, test_stream = stream_of(bpe, train_texts), stream_of(bpe, test_texts)
    windows = test_stream[: len(test_stream) // args.context * args.context].view(-1, args.context)
    model = GPT(bpe.vocab_size, context_length=args.context, dim=args.dim, depth=args.depth, heads=args.heads, seed=0)
    loss = train(model, train_stream, args.steps, args, seed=1)
    trained_at = time.time() - started
    print(f"trained in {trained_at:.0f} s; scoring", file=sys.stderr)

    sections = [
        f"Tiny zoo GPT (dim {args.dim}, depth {args.depth}, context {args.context}), byte-level BPE of "
        f"{bpe.vocab_size} ids on {len(train_texts)} English fortunes, {args.steps} steps (last train loss "
        f"{loss:.3f}, {trained_at:.0f} s); {windows.numel()} held-out tokens.",
        "",
        *lm_rows(model, bpe, windows, args),
        "",
        *geometry_rows(model, bpe, train_stream, args),
        "",
        frequency_attack(bpe, train_stream, test_stream, args),
        "",
        *transformers_rows(bpe, windows, args),
        "",
        f"Total {time.time() - started:.0f} s wall, {time.process_time():.0f} s CPU, torch {torch.__version__}, "
        f"{args.threads} CPU thread(s).",
    ]
    text = "\n".join(sections) + "\n"
    print(text)
    if args.out:
        atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
