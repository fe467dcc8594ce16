"""pFID's token perturbation on Open-MAGVIT2's 2^18-code LFQ grid: neighbour search before, bit-flip enumeration after.

    python benchmarks/grid_neighbours.py [--images 1] [--alpha 0.1] [--threads 2] [--repeats 3] [--grid-only]

One image of open-magvit2-256 is 16 x 16 ids; delta is pFID's default ceil(0.025 K) = 6554. Three ways, one seed:

* before -- a neighbour table for every distinct id, each ranked against all 262,144 codes (the old code path);
* drawn only, search -- tables only for the distinct ids of the drawn tokens, still ranked against all codes;
* drawn only, grid -- the same tables enumerated by Hamming shell (``sign_grid_bits`` detection included).

Prints wall seconds (best of ``--repeats``; "before" runs once, it is the slow one) and checks the three outputs
are equal. ``--grid-only`` times the grid path alone (the searches take minutes for a batch of 50 images).
Timings are printed, not asserted.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

from zoo.quantize.perturb import code_neighbours, perturb_token_ids

BITS = 18


def lsb_grid(bits: int) -> torch.Tensor:
    """Open-MAGVIT2's implicit codebook: channel i is bit i of the id (least significant first), in {-1, +1}."""
    ids = torch.arange(1 << bits)
    return ((ids.unsqueeze(1) >> torch.arange(bits)) & 1).float() * 2 - 1


def before(ids: torch.Tensor, codebook: torch.Tensor, alpha: float, delta: int, seed: int) -> torch.Tensor:
    """The previous perturb_token_ids: same draws, a searched table for every distinct id."""
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.rand(ids.shape, generator=generator) < alpha
    ranks = torch.randint(0, delta, ids.shape, generator=generator)
    unique, inverse = torch.unique(ids, return_inverse=True)
    table = code_neighbours(codebook, delta, unique, sign_grid=False)
    return torch.where(drawn, table[inverse, ranks], ids)


def best_of(repeats: int, call) -> tuple[float, torch.Tensor]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = call()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid-only", action="store_true", help="skip the two searched paths")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    codebook = lsb_grid(BITS)
    delta = math.ceil(0.025 * codebook.shape[0])
    ids = torch.randint(0, codebook.shape[0], (args.images, 16, 16), generator=torch.Generator().manual_seed(1))
    print(f"{args.images} image(s) x 16 x 16 ids, K = 2^{BITS}, delta = {delta}, alpha = {args.alpha}, "
          f"{args.threads} thread(s)")
    def perturbed(flag):
        return lambda: perturb_token_ids(ids, codebook, args.alpha, delta, torch.Generator().manual_seed(args.seed),
                                         sign_grid=flag)

    if args.grid_only:
        seconds, _ = best_of(args.repeats, perturbed(None))
        print(f"{'drawn ids only, grid':<36} {seconds:9.4f} s")
        return 0
    rows = [("before: every distinct id, search",
             *best_of(1, lambda: before(ids, codebook, args.alpha, delta, args.seed))),
            ("drawn ids only, search", *best_of(args.repeats, perturbed(False))),
            ("drawn ids only, grid", *best_of(args.repeats, perturbed(None)))]
    reference = rows[0][2]
    for name, seconds, out in rows:
        print(f"{name:<36} {seconds:9.4f} s   equal to before: {torch.equal(out, reference)}")
    return 0 if all(torch.equal(out, reference) for _, _, out in rows) else 1

if __name__ == "__main__":
    raise SystemExit(main())
