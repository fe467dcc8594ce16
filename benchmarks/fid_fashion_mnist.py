"""Sanity check of zoo's Inception FID on Fashion-MNIST: real-vs-real ≪ blurred ≪ noise.

Sets of 1,000 images each: a train subset, a test subset, the same test images blurred (Gaussian,
σ = 1 px at 28 px) and with Gaussian noise (σ = 0.2, clamped). Every set goes through the same
``inception`` extractor (8-bit, grey -> RGB, bicubic to 299, TF input range) and streaming moments.

    python -m benchmarks.fid_fashion_mnist [--n 1000]

Writes ``benchmarks/results/fid_fashion_mnist.json`` and prints it. About 4,000 Inception passes:
~6 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torchvision.transforms.functional import gaussian_blur
from tqdm import tqdm

from zoo.data import collate, load_dataset
from zoo.metrics.features import build_extractor
from zoo.metrics.fid import FeatureMoments, moments_distance


def images(split: str, n: int) -> torch.Tensor:
    dataset = load_dataset("fashion-mnist", split=split, limit=n, seed=0)
    return collate([dataset[i] for i in range(len(dataset))])["image"]  # [n, 3, 28, 28]


def moments(extractor, x: torch.Tensor, name: str, batch: int = 50) -> FeatureMoments:
    result = FeatureMoments(extractor.dim)
    for start in tqdm(range(0, len(x), batch), desc=name, unit="batch"):
        result.update(extractor(x[start : start + batch]))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "fid_fashion_mnist.json"))
    args = parser.parse_args()
    torch.set_num_threads(2)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    extractor = build_extractor("inception")
    test = images("test", args.n)
    sets = {
        "train": images("train", args.n),
        "test": test,
        "test_blurred": gaussian_blur(test, kernel_size=7, sigma=1.0),
        "test_noise": (test + 0.2 * torch.randn(test.shape, generator=generator)).clamp(0, 1),
    }
    stats = {name: moments(extractor, x, name) for name, x in sets.items()}
    result = {
        "n_per_set": args.n,
        "extractor": extractor.policy,
        "fid": {
            "test_vs_test": moments_distance(stats["test"], stats["test"]),
            "train_vs_test": moments_distance(stats["train"], stats["test"]),
            "test_vs_blurred": moments_distance(stats["test"], stats["test_blurred"]),
            "test_vs_noise": moments_distance(stats["test"], stats["test_noise"]),
        },
        "seconds": round(time.perf_counter() - started, 1),
        "images_per_s": round(sum(len(x) for x in sets.values()) / (time.perf_counter() - started), 2),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
