"""Image-tokenizer training losses: LPIPS-style perceptual distance, PatchGAN hinge loss, adaptive weight.

* Perceptual (LPIPS, Zhang et al., https://arxiv.org/abs/1801.03924): unit-normalised VGG16 features
  at five depths, squared differences, per-channel linear weights when the file has them
  (``lin0.weight`` ... ``lin4.weight``, or lpips' ``lin0.model.1.weight`` names), else a plain mean.
  Weights come from a **local safetensors file** holding torchvision VGG16 ``features.*`` tensors:
  nothing downloads. The network is frozen and kept outside the model's state dict.
* PatchGAN discriminator (pix2pix, https://arxiv.org/abs/1611.07004) with the hinge loss, and
  VQGAN's adaptive weight (https://arxiv.org/abs/2012.09841, eq. 7): the GAN term is scaled by
  ``||grad rec|| / ||grad gan||`` at the decoder's last layer so neither swamps the other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from zoo.errors import ZooError

_VGG_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in torchvision's vgg16().features
_VGG_WIDTHS = (64, 128, 256, 512, 512)
# LPIPS's input scaling (from [-1, 1]), chosen to match ImageNet statistics.
_SHIFT = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
_SCALE = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)


class PerceptualLoss(nn.Module):
    """LPIPS-style distance between image batches in ``[-1, 1]``; returns the batch mean."""

    def __init__(self, weights_path: str | Path):
        super().__init__()
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from torchvision.models.vgg import cfgs, make_layers

        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise ZooError(f"perceptual_weights: {path} does not exist (expected a local safetensors file with "
                           "torchvision VGG16 'features.*' tensors, optionally LPIPS 'lin0..lin4' weights)")
        try:
            tensors = load_file(str(path))
        except SafetensorError as err:
            raise ZooError(f"perceptual_weights: {path} is not a valid safetensors file ({err})") from None
        self.features = make_layers(cfgs["D"])[: _VGG_TAPS[-1] + 1]  # VGG16's conv stack, as torchvision names it
        wanted = {k: v for k, v in tensors.items() if k.startswith("features.")}
        state = {k[len("features."):]: v for k, v in wanted.items()}
        missing, unexpected = self.features.load_state_dict(state, strict=False)
        if missing:
            raise ZooError(f"perceptual_weights: {path} lacks VGG16 tensors {sorted(missing)[:4]} (expected "
                           "torchvision names such as 'features.0.weight')")
        self.linear = nn.ParameterList()
        for i, width in enumerate(_VGG_WIDTHS):
            weight = tensors.get(f"lin{i}.weight", tensors.get(f"lin{i}.model.1.weight"))
            if weight is not None and weight.numel() != width:
                raise ZooError(f"perceptual_weights: lin{i} has {weight.numel()} values, expected {width}")
            self.linear.append(nn.Parameter(torch.full((1, width, 1, 1), 1.0 / width) if weight is None
                                            else weight.reshape(1, width, 1, 1).float()))
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y ``[B, 3, H, W]`` in ``[-1, 1]`` -> scalar."""
        shift, scale = _SHIFT.to(x), _SCALE.to(x)
        h_x, h_y = (x - shift) / scale, (y - shift) / scale
        total = x.new_zeros(())
        taps = iter(zip(_VGG_TAPS, self.linear))
        tap, weight = next(taps)
        for index, layer in enumerate(self.features):
            h_x, h_y = layer(h_x), layer(h_y)
            if index == tap:
                diff = (F.normalize(h_x, dim=1, eps=1e-10) - F.normalize(h_y, dim=1, eps=1e-10)).square()
                total = total + (diff * weight).sum(dim=1).mean()
                tap, weight = next(taps, (None, None))
        return total


class PatchDiscriminator(nn.Module):
    """PatchGAN: a conv stack scoring overlapping patches real (> 0) or fake (< 0); logits ``[B, 1, h, w]``."""

    def __init__(self, channels: int = 64, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv2d(3, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        width = channels
        for i in range(1, layers + 1):
            out = channels * min(2**i, 8)
            stride = 2 if i < layers else 1
            blocks += [nn.Conv2d(width, out, 4, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.LeakyReLU(0.2)]
            width = out
        blocks.append(nn.Conv2d(width, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*blocks)
        for module in self.modules():  # pix2pix's init
            if isinstance(module, nn.Conv2d):
                nn.init.normal_(module.weight, 0.0, 0.02)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.normal_(module.weight, 1.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@contextmanager
def frozen_parameters(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` with ``requires_grad`` off inside the block, each parameter's flag restored after.

    A generator's GAN term runs the discriminator in here: the gradient still reaches the generator through the
    discriminator's input, but leaves none on the discriminator, whose own optimiser steps on its own loss.
    """
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for parameter, flag in zip(module.parameters(), flags):
            parameter.requires_grad_(flag)


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (E[relu(1 - D(x))] + E[relu(1 + D(G(z)))])."""
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def hinge_generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.mean()


def adaptive_gan_weight(reconstruction_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                        max_weight: float = 1e4) -> torch.Tensor:
    """||d rec / d last|| / (||d gan / d last|| + 1e-4), clamped to [0, max_weight] and detached."""
    rec_grad = torch.autograd.grad(reconstruction_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (gan_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()
