"""TokenFlow's semantic branch: the semantic encoder choices and the semantic decoder.

* Semantic encoder (``semantic_encoder_from_spec``): features ``[B, C, h', w']`` from one of

  - ``{kind: cnn, channels, channel_mult, num_res_blocks, z_channels, attention}``: a VQGAN-style CNN
    trained from scratch (distilled only through the semantic decoder's loss);
  - ``{kind: module, target, config, method, dim, init_from_teacher}`` or
    ``{kind: timm, model, kwargs, layer, size, mean, std, init_from_teacher}``: a backbone built from its
    config (``zoo.image.teachers.build_feature_network``); with ``init_from_teacher`` its weights are
    copied from the teacher's network on the first training step, as TokenFlow initialises its semantic
    encoder from CLIP / SigLIP and then trains it.

  then resized to the token grid and mapped by TokenFlow's task layer ``Linear - Tanh - Linear`` to
  ``semantic_dim`` (https://arxiv.org/abs/2412.03069, section 3.2).
* Semantic decoder (``SemanticDecoder``): a small ViT over the semantic codes of the token grid with
  2-D sin-cos positions, then ``Linear - Tanh - Linear`` to the teacher's feature width; trained with
  ``1 - cos(prediction, teacher)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from zoo.errors import ZooError
from zoo.image.teachers import FeatureNetwork, Teacher, build_feature_network
from zoo.image.vq.vqgan import Encoder

_ENCODER_OPTIONS = {
    "cnn": ("kind", "channels", "channel_mult", "num_res_blocks", "z_channels", "attention"),
    "module": ("kind", "target", "config", "method", "dim", "size", "mean", "std", "init_from_teacher"),
    "timm": ("kind", "model", "kwargs", "layer", "size", "mean", "std", "init_from_teacher"),
}


class SemanticEncoder(nn.Module):
    """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> semantic features ``[B, semantic_dim, h, w]`` on the token grid."""

    def __init__(self, spec: dict, semantic_dim: int, pixel_defaults: dict):
        super().__init__()
        kind = spec.get("kind", "cnn")
        if kind not in _ENCODER_OPTIONS:
            raise ZooError(f"semantic_encoder: unknown kind {kind!r}; expected one of {sorted(_ENCODER_OPTIONS)}")
        unknown = sorted(set(spec) - set(_ENCODER_OPTIONS[kind]))
        if unknown:
            raise ZooError(f"semantic_encoder kind {kind!r}: unknown option(s) {unknown}; it takes "
                           f"{sorted(_ENCODER_OPTIONS[kind])}")
        self.kind = kind
        self.init_from_teacher = bool(spec.get("init_from_teacher", False))
        if kind == "cnn":
            options = {**pixel_defaults, **{k: v for k, v in spec.items() if k != "kind"}}
            self.backbone: nn.Module = Encoder(int(options["channels"]), [int(m) for m in options["channel_mult"]],
                                               int(options["num_res_blocks"]), int(options["z_channels"]),
                                               bool(options["attention"]))
            width = int(options["z_channels"])
            self.downsample = 2 ** (len(options["channel_mult"]) - 1)
        else:
            network_spec = {k: v for k, v in spec.items() if k not in ("dim", "init_from_teacher")}
            self.backbone = build_feature_network(network_spec)
            width = spec.get("dim") or getattr(self.backbone.network, "feature_dim", None) \
                or getattr(self.backbone.network, "num_features", None)
            if not isinstance(width, int) or width < 1:
                raise ZooError(f"semantic_encoder kind {kind!r}: set 'dim', the width of the network's features")
            self.downsample = None
        # TokenFlow's encode_task_layer, per position (1x1 convs).
        self.task = nn.Sequential(nn.Conv2d(width, width, 1), nn.Tanh(), nn.Conv2d(width, semantic_dim, 1))
        self.register_buffer("initialised_from_teacher", torch.zeros((), dtype=torch.long))

    def forward(self, images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        if self.kind == "cnn":
            features = self.backbone(2.0 * images - 1.0)
        else:
            features = self.backbone(images)
            if features.ndim != 4:
                raise ZooError(f"semantic_encoder: the network returned {list(features.shape)}; a token grid "
                               "[B, C, h, w] or tokens [B, N, C] are needed")
        if tuple(features.shape[-2:]) != tuple(grid):
            features = resize_grid(features, grid)
        return self.task(features)

    @torch.no_grad()
    def maybe_init_from(self, teacher: Teacher) -> bool:
        """Copy the teacher's weights into the backbone once (TokenFlow's initialisation); True when copied."""
        if not self.init_from_teacher or int(self.initialised_from_teacher) == 1:
            return False
        if not isinstance(self.backbone, FeatureNetwork):
            raise ZooError("semantic_encoder: init_from_teacher needs a 'module' or 'timm' encoder")
        try:
            self.backbone.network.load_state_dict(teacher.network.state_dict(), strict=True)
        except (RuntimeError, AttributeError) as err:
            raise ZooError(f"semantic_encoder: init_from_teacher: the teacher's network does not fit the semantic "
                           f"encoder (they must be the same architecture): {err}") from None
        self.initialised_from_teacher.fill_(1)
        return True


def resize_grid(features: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize a feature grid ``[B, C, h, w]``: area averaging when shrinking, bilinear when growing."""
    shrinking = features.shape[-2] >= grid[0] and features.shape[-1] >= grid[1]
    if shrinking:
        return F.interpolate(features, size=grid, mode="area")
    return F.interpolate(features, size=grid, mode="bilinear", align_corners=False)


def sincos_2d(height: int, width: int, dim: int, device=None) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding ``[height * width, dim]`` (MAE, https://arxiv.org/abs/2111.06377)."""
    if dim % 4:
        raise ZooError(f"semantic_decoder.width must be a multiple of 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32, device=device) / (dim // 4))
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32, device=device),
                            torch.arange(width, dtype=torch.float32, device=device), indexing="ij")
    parts = []
    for position in (ys.reshape(-1), xs.reshape(-1)):
        angles = position[:, None] * omega[None, :]  # [h*w, dim/4]
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1)  # [h*w, dim]


class SemanticDecoder(nn.Module):
    """Semantic codes ``[B, semantic_dim, h, w]`` -> predicted teacher features ``[B, out_dim, h, w]``.

    TokenFlow's decoder is a 3-block ViT on the code grid followed by a ``Linear - Tanh - Linear`` task layer.
    """

    def __init__(self, semantic_dim: int, out_dim: int, width: int = 256, depth: int = 3, heads: int = 4):
        super().__init__()
        if width % heads:
            raise ZooError(f"semantic_decoder: width {width} is not divisible by heads {heads}")
        self.width = width
        self.proj_in = nn.Linear(semantic_dim, width)
        block = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.blocks = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.task = nn.Sequential(nn.Linear(width, width), nn.Tanh(), nn.Linear(width, out_dim))

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        height, width = codes.shape[-2:]
        tokens = self.proj_in(rearrange(codes, "b d h w -> b (h w) d"))  # [B, h*w, width]
        tokens = tokens + sincos_2d(height, width, self.width, codes.device).to(tokens.dtype)
        out = self.task(self.norm(self.blocks(tokens)))  # [B, h*w, out_dim]
        return rearrange(out, "b (h w) d -> b d h w", h=height, w=width)


def cosine_distillation_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean(1 - cos)`` between predicted ``[B, D, h, w]`` and teacher features (``[B, D, h', w']`` or ``[B, D]``).

    A grid target is compared position by position (the prediction resized to its grid); a vector target
    with the mean prediction over positions.
    """
    if target.ndim == 2:
        return (1 - F.cosine_similarity(prediction.mean(dim=(2, 3)), target, dim=1)).mean()
    if tuple(prediction.shape[-2:]) != tuple(target.shape[-2:]):
        prediction = F.interpolate(prediction, size=target.shape[-2:], mode="bilinear", align_corners=False)
    return (1 - F.cosine_similarity(prediction, target, dim=1)).mean()
