"""Zero-TPrune against top-k-attention and random pruning inside the shipped 1D tokenizers' ViT encoders.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/zero_tprune_tokenizers.py
    OMP_NUM_THREADS=1 python benchmarks/zero_tprune_tokenizers.py --keep 0.9 0.7 --limit 200 --models titok-fmnist

For each entry (``zoo.load(name, pretrained=True)``: titok-fmnist, seed-fmnist) and keep ratio, every method prunes
the same blocks (``zoo.image.prune.tokenizers.default_layers``, or ``--layers``) to the same patch-token counts, so
the rows differ only in which patches go. On the first ``--limit`` Fashion-MNIST test images (32x32): PSNR of
``decode(encode(x))`` against ``x`` (reconstructions clamped to [0, 1], the mean of per-image PSNR, as the psnr
metric reports it), the share of ids equal to the unpruned encoder's, and the encoder's multiply-adds per image
(patch embedding to the quantiser's input, selection included: ``encoder_flops``). Then Zero-TPrune's S-stage share
and other pruning layers at ``--ablation-keep``. Prints Markdown tables.
"""

from __future__ import annotations

import argparse

import torch

import zoo
from zoo.data import load_dataset
from zoo.image.prune.tokenizers import encoder_flops, prune_encoder, token_schedule
from zoo.metrics.image import psnr

METHODS = ("zero-tprune", "topk", "random")
# Variants at --ablation-keep: name -> (prune_encoder keyword arguments, applies to these entries).
VARIANTS = {
    "no S stage (similarity_share 0)": ({"similarity_share": 0.0}, None),
    "all drops in S (similarity_share 1)": ({"similarity_share": 1.0}, None),
    "SEED: prune in block 0 instead of 1": ({"layers": [0]}, "seed-fmnist"),
    "SEED: prune in blocks 0 and 1": ({"layers": [0, 1]}, "seed-fmnist"),
}


def test_images(limit: int) -> torch.Tensor:
    data = load_dataset("fashion-mnist:split=test,size=32")
    return torch.stack([data[i]["image"] for i in range(min(limit, len(data)))])


@torch.no_grad()
def measure(tokenizer, images: torch.Tensor, reference: torch.Tensor | None, batch_size: int) -> tuple:
    """(mean PSNR in dB, share of ids equal to ``reference``, the ids)."""
    ids = torch.cat([tokenizer.encode(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])
    quality = torch.cat([psnr(images[i:i + batch_size], tokenizer.decode(ids[i:i + batch_size]).clamp(0, 1))
                         for i in range(0, len(images), batch_size)])
    agreement = 1.0 if reference is None else float((ids == reference).float().mean())
    return float(quality.mean()), agreement, ids


def row(name: str, method: str, keep: float, model, base_flops: int, images, reference, batch_size: int) -> str:
    quality, agreement, _ = measure(model, images, reference, batch_size)
    flops = encoder_flops(model)
    return (f"| {name} | {method} | {keep} | {token_schedule(model)} | {flops / 1e6:.2f} | "
            f"{1 - flops / base_flops:.1%} | "
            f"{quality:.2f} | {agreement:.4f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["titok-fmnist", "seed-fmnist"])
    parser.add_argument("--keep", type=float, nargs="+", default=[0.7, 0.5])
    parser.add_argument("--layers", type=int, nargs="+", default=None, help="blocks to prune (default: per entry)")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--seed", type=int, default=0, help="the random method's seed")
    parser.add_argument("--ablation-keep", type=float, nargs="*", default=[0.7])
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = test_images(args.limit)
    header = ("| tokenizer | method | keep per layer | patch tokens per block | encoder MFLOPs | FLOPs saved | "
              "PSNR dB | ids equal to unpruned |\n|---|---|---|---|---|---|---|---|")
    tokenizers = {name: zoo.load(name, pretrained=True).eval() for name in args.models}
    references, bases = {}, {}
    print(f"{len(images)} Fashion-MNIST test images\n\n{header}")
    for name, tokenizer in tokenizers.items():
        quality, _, references[name] = measure(tokenizer, images, None, args.batch_size)
        bases[name] = encoder_flops(tokenizer)
        print(f"| {name} | none | 1.0 | {token_schedule(tokenizer)} | {bases[name] / 1e6:.2f} | 0% | {quality:.2f} "
              f"| 1.0000 |", flush=True)
        for keep in [1.0, *args.keep]:
            for method in METHODS:
                model = prune_encoder(tokenizer, keep, layers=args.layers, method=method, seed=args.seed)
                print(row(name, method, keep, model, bases[name], images, references[name], args.batch_size),
                      flush=True)
    if args.ablation_keep:
        print(f"\n{header.replace('| method |', '| Zero-TPrune variant |')}")
    for keep in args.ablation_keep:
        for variant, (options, only) in VARIANTS.items():
            for name, tokenizer in tokenizers.items():
                if only is not None and name != only:
                    continue
                for method in METHODS if "layers" in options else ("zero-tprune",):
                    model = prune_encoder(tokenizer, keep, method=method, seed=args.seed, **options)
                    label = variant if "layers" not in options else f"{variant}: {method}"
                    print(row(name, label, keep, model, bases[name], images, references[name], args.batch_size),
                          flush=True)


if __name__ == "__main__":
    main()
