"""Open-MAGVIT2's LFQ image tokenizer behind the zoo contract.

    images [B, 3, H, W] in [0, 1] -> 2x - 1 (the authors' ``image / 127.5 - 1``) -> Encoder -> LFQ
        -> ids [B, H / f, W / f] in [0, 2 ** bits): bit i = (channel i > 0), channel 0 least significant
    ids -> {-1, +1}^bits codes -> Decoder -> (y + 1) / 2, clamped to [0, 1]

Weights, normalisation, the strict and convert-once loading paths and ``zoo convert`` are the published
tokenizers' (``zoo.image.published.base``); this family brings its own network (``zoo.image.magvit2.model``,
a port: no maintained package implements it) instead of a library class, and the authors' key layout
(``zoo.image.magvit2.convert``).

The codebook is implicit: the 2 ** bits corners of {-1, +1}^bits. ``embed`` computes codes from the ids' bits
without it; ``codebook`` materialises it once per device on first use ([262144, 18] float32, 18.9 MB, at
18 bits), as the zoo's own LFQ entries do, so pFID and perturbed PSNR find grid neighbours (codes at Hamming
distance 1, then 2, ...; ties by lower id) through the same ``zoo.quantize.perturb`` path as every entry.
"""

from __future__ import annotations

import torch

from zoo.errors import ZooError
from zoo.image.magvit2.convert import from_authors
from zoo.image.magvit2.model import Magvit2Config, Magvit2VQ
from zoo.image.published.base import PublishedImageTokenizer
from zoo.tokenizer import check_ids


class Magvit2Tokenizer(PublishedImageTokenizer):
    """Open-MAGVIT2 (https://arxiv.org/abs/2409.04410): f8 / f16 conv tokenizer, LFQ with 2 ** z_channels ids."""

    # "model." is this wrapper's own layout; "" the authors' (encoder./decoder. and model_ema.* at the top).
    source_prefixes = ("model.", "")

    def _build(self, vq_config: dict, seed: int) -> Magvit2VQ:
        cfg = Magvit2Config.from_dict(dict(vq_config), type(self).__name__)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = Magvit2VQ(cfg)
        self._codebooks: dict[torch.device, torch.Tensor] = {}
        return model.float().eval().requires_grad_(False)

    def _downsample_factor(self) -> int:
        return self.model.downsample

    @property
    def family(self) -> str:
        return "open-magvit2"

    @property
    def vocab_size(self) -> int:
        return self.model.quantize.codebook_size

    @property
    def codebook(self) -> torch.Tensor:
        """``[2 ** bits, bits]``: row k is the code of id k (``embed`` of every id), built once per device."""
        device = self.device
        if device not in self._codebooks:
            self._codebooks[device] = self.model.quantize.codes(torch.arange(self.vocab_size, device=device))
        return self._codebooks[device]

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, h, w]`` -> codes ``[B, h, w, bits]`` in {-1, +1}, what the decoder reads."""
        return self.model.quantize.codes(check_ids(ids, self.vocab_size).to(self.device))

    def ids_from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode(pixels)

    def pixels_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        if ids.shape[-2] * ids.shape[-1] < 2:
            # The decoder's adaptive GroupNorm takes the codes' Bessel-corrected variance over positions.
            raise ZooError(f"ids: a {ids.shape[-2]}x{ids.shape[-1]} grid has one position; Open-MAGVIT2's decoder "
                           "needs at least 2 (it normalises by the codes' variance over positions)")
        return self.model.decode(ids)

    @classmethod
    def convert(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The authors' Lightning ``state_dict`` (EMA weights preferred) or this wrapper's -> this wrapper's names."""
        return from_authors(state)
