"""Zero-TPrune against random and top-k-attention pruning: accuracy, FLOPs and throughput of a small ViT.

    OMP_NUM_THREADS=1 python benchmarks/zero_tprune.py                 # trains the ViT first if it is not there
    OMP_NUM_THREADS=1 python benchmarks/zero_tprune.py --keep 0.9 0.7 --limit 1000

The model is ``zoo.image.prune.ViTClassifier`` (timm ViT, 4x4 patches of a 32x32 image -> 64 patch tokens + CLS,
width 64, 6 blocks, 4 heads), trained here on the Fashion-MNIST train split (``--train-steps`` of 64 images, AdamW,
warmup + cosine, flips) and saved to ``--checkpoint``; the pruning is zero-shot (no step after training). Every
method prunes the same layers to the same token counts (``keep`` of the patch tokens at each of ``--layers``), so
the rows differ only in which tokens go. Accuracy on the first ``--limit`` images of the official test file;
MFLOPs are multiply-adds per image (selection cost included); throughput is images per second at batch 250 on one
CPU thread (best of ``--repeats``). Prints Markdown tables: methods x keep ratios, then Zero-TPrune's options
varied one at a time at ``--ablation-keep``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch

from zoo.data import load_dataset
from zoo.image.prune import TokenPrunedViT, ViTClassifier
from zoo.image.prune.vit import pruned_accuracy

METHODS = ("zero-tprune", "topk-attention", "random")
# Zero-TPrune's options varied one at a time (the ablation table): name -> TokenPrunedViT keyword arguments.
VARIANTS = {
    "default (10 WPR iterations, CLS boost, half the drops in S)": {},
    "no S stage (similarity_share 0)": {"similarity_share": 0.0},
    "all drops in S (similarity_share 1)": {"similarity_share": 1.0},
    "30 WPR iterations": {"iterations": 30},
    "uniform WPR start (Zero-TPrune-uni)": {"cls_boost": False},
}


def stacked(spec: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    data = load_dataset(spec)
    n = len(data) if limit is None else min(limit, len(data))
    items = [data[i] for i in range(n)]
    return torch.stack([item["image"] for item in items]), torch.tensor([int(item["label"]) for item in items])


def train_classifier(folder: Path, steps: int, batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> ViTClassifier:
    """Train the ViT on Fashion-MNIST (train split) and save it; deterministic for a seed."""
    torch.manual_seed(seed)
    images, labels = stacked("fashion-mnist:split=train,size=32")
    model = ViTClassifier(seed=seed).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    warmup = 50
    generator = torch.Generator().manual_seed(seed)
    for step in range(steps):
        progress = (step - warmup) / max(1, steps - warmup)
        scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * progress))
        for group in optimizer.param_groups:
            group["lr"] = lr * max(scale, 0.05)
        index = torch.randint(0, images.shape[0], (batch_size,), generator=generator)
        x = images[index]
        flip = torch.rand(batch_size, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        losses = model.training_losses({"image": x, "label": labels[index]}, step)
        optimizer.zero_grad()
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if step % 250 == 0 or step == steps - 1:
            print(f"train step {step}: loss {float(losses['loss']):.3f}, accuracy {float(losses['accuracy']):.3f}",
                  flush=True)
    model.eval()
    model.save_pretrained(folder, metadata={"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                                            "data": "fashion-mnist:split=train,size=32"})
    return model


def throughput(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        best = min(best, time.perf_counter() - start)
    return x.shape[0] / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/zero-tprune/vit"))
    parser.add_argument("--train-steps", type=int, default=1500)
    parser.add_argument("--keep", type=float, nargs="+", default=[0.9, 0.8, 0.7, 0.6, 0.5])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--limit", type=int, default=1500)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ablation-keep", type=float, nargs="*", default=[0.7],
                        help="keep ratios at which Zero-TPrune's options are varied one at a time")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if (args.checkpoint / "config.json").is_file():
        classifier = ViTClassifier.from_pretrained(args.checkpoint).eval()
    else:
        classifier = train_classifier(args.checkpoint, args.train_steps)
    images, labels = stacked("fashion-mnist:split=test,size=32", args.limit)
    x = classifier.prepare(images)
    batch = x[:250]
    full = TokenPrunedViT(classifier.vit, 1.0, method="none")
    base_flops, base_speed = full.flops(), throughput(full, batch, args.repeats)
    print(f"\nViT: {sum(p.numel() for p in classifier.parameters()):,} parameters; {args.limit} test images; "
          f"pruning layers {args.layers}\n")
    print("| method | keep per layer | patch tokens per block | MFLOPs | FLOPs saved | accuracy | images/s "
          "| speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    accuracy = pruned_accuracy(full, x, labels)
    schedule = full.token_schedule(classifier.vit.patch_embed.num_patches)[:-1]
    print(f"| none | 1.0 | {schedule} | {base_flops / 1e6:.2f} | 0% | {accuracy:.4f} | {base_speed:.0f} | 1.00x |")
    for keep in args.keep:
        for method in METHODS:
            model = TokenPrunedViT(classifier.vit, keep, layers=args.layers, method=method)
            flops, speed = model.flops(), throughput(model, batch, args.repeats)
            schedule = model.token_schedule(classifier.vit.patch_embed.num_patches)[:-1]
            print(f"| {method} | {keep} | {schedule} | {flops / 1e6:.2f} | {1 - flops / base_flops:.1%} | "
                  f"{pruned_accuracy(model, x, labels):.4f} | {speed:.0f} | {speed / base_speed:.2f}x |", flush=True)
    if args.ablation_keep:
        print("\n| Zero-TPrune variant | keep per layer | MFLOPs | accuracy |\n|---|---|---|---|")
    for keep in args.ablation_keep:
        for name, options in VARIANTS.items():
            model = TokenPrunedViT(classifier.vit, keep, layers=args.layers, method="zero-tprune", **options)
            print(f"| {name} | {keep} | {model.flops() / 1e6:.2f} | {pruned_accuracy(model, x, labels):.4f} |",
                  flush=True)


if __name__ == "__main__":
    main()
