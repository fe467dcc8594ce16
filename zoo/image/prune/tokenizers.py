"""Zero-TPrune inside the 1D image tokenizers' ViT encoders (TiTok, SEED): fewer patch tokens, same ids shape.

    TiTok  [patches; K latents] -> blocks -> latents' outputs -> quantiser -> ids [B, K]
    SEED   patches -> blocks -> patch features -> causal Q-Former (L queries cross-attend) -> ids [B, L]
                         |
        at a pruning layer l: h = x + attn(norm1(x))          (probabilities A and keys kept, timm ``Block``)
                              keep = selector(A, keys, n_keep)  (Zero-TPrune, top-k attention or random)
                              x = h[keep] + mlp(norm2(h[keep]))

``prune_encoder(tokenizer, keep_ratio, layers, method, seed)`` returns a copy of the tokenizer whose encoder drops
``1 - keep_ratio`` of the patch tokens present at each of ``layers`` (zero-shot, weights untouched); ``encode``
still gives ``[B, L]`` ids and ``decode`` is the original's. Only patch tokens are ever dropped: TiTok's latent
tokens (the last K of its sequence, the ones that get quantised) are the selectors' always-kept prefix, and SEED's
queries live in the Q-Former, outside the pruned stack, which only reads fewer patch features.

Default layers: pruning after the attention of TiTok's last block cannot change the latents (their outputs are
already computed), so TiTok prunes in the later half of blocks ``0 .. depth - 2`` (block 0 of the shipped depth-2
encoder); SEED's Q-Former reads the last block's output, so SEED prunes in the later half of all its blocks
(block 1 of 2).

``topk`` here ranks patches by the attention they receive, averaged over heads and over the readers: TiTok's
latents (their CLS analogue) or, in SEED's prefix-free encoder, every token. ``encoder_flops`` counts the
multiply-adds of ``encode`` up to the quantiser with ``zoo.image.prune.vit``'s conventions.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from zoo.errors import ZooError
from zoo.image.prune.importance import random_select, zero_tprune_select
from zoo.image.prune.vit import attention_with_probabilities

METHODS = ("zero-tprune", "topk", "random")


def _with_patches_last(n_patches: int, n_latent: int, device) -> torch.Tensor:
    """Permutation putting the trailing latents in front, as the selectors' prefix."""
    return torch.cat([torch.arange(n_patches, n_patches + n_latent, device=device),
                      torch.arange(n_patches, device=device)])


class PrunedBlocks(nn.Module):
    """timm ``Block`` s over ``[patches; latent]`` tokens that drop patch tokens at ``layers`` (module docstring).

    The blocks keep their names (``"0"``, ``"1"``, ...), so a state dict reads as the ``nn.Sequential``'s did.
    """

    def __init__(self, blocks: nn.Sequential, keep_ratio: float, layers: list[int], method: str, latent: int = 0,
                 seed: int = 0, iterations: int = 10, similarity_share: float = 0.5):
        super().__init__()
        for index, block in enumerate(blocks):
            self.add_module(str(index), block)
        self.keep_ratio, self.layers, self.method, self.latent = float(keep_ratio), list(layers), method, int(latent)
        self.seed, self.iterations, self.similarity_share = int(seed), int(iterations), float(similarity_share)

    def token_schedule(self, n_patches: int) -> list[int]:
        """Patch tokens entering each block, and after the last one: ``[depth + 1]`` counts."""
        counts = [n_patches]
        for index in range(len(self)):
            n = counts[-1]
            if index in self.layers:
                n = min(n, max(1, round(self.keep_ratio * n)))
            counts.append(n)
        return counts

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def _select(self, probs: torch.Tensor, keys: torch.Tensor, n_keep: int, generator) -> torch.Tensor:
        """Patch positions ``[B, n_keep]`` (sorted) to keep, from attention over ``[patches; latent]``."""
        n_patches = probs.shape[-1] - self.latent
        if self.method == "topk":
            readers = probs[:, :, n_patches:, :n_patches] if self.latent else probs
            received = readers.mean(dim=(1, 2))[:, :n_patches]  # [B, P]
            return received.topk(n_keep, dim=1).indices.sort(dim=1).values
        order = _with_patches_last(n_patches, self.latent, probs.device)
        probs, keys = probs[:, :, order][:, :, :, order], keys[:, :, order]
        if self.method == "zero-tprune":
            keep = zero_tprune_select(probs, keys, n_keep, self.latent, self.iterations, self.similarity_share)
        else:
            keep = random_select(probs, keys, n_keep, self.latent, generator)
        return keep[:, self.latent:] - self.latent

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One generator per call: the same images give the same random choice.
        generator = torch.Generator().manual_seed(self.seed)
        for index, block in enumerate(self):
            n_patches = x.shape[1] - self.latent
            n_keep = max(1, round(self.keep_ratio * n_patches))
            if index not in self.layers or n_keep >= n_patches:
                x = block(x)  # the unpruned path, bit for bit
                continue
            out, probs, keys = attention_with_probabilities(block.attn, block.norm1(x))
            x = x + block.ls1(out)
            keep = self._select(probs, keys, n_keep, generator)  # [B, n_keep]
            patches = x[:, :n_patches].gather(1, keep[..., None].expand(-1, -1, x.shape[-1]))
            x = torch.cat([patches, x[:, n_patches:]], dim=1)
            x = x + block.ls2(block.mlp(block.norm2(x)))
        return x


class PrunedLatentEncoder(nn.Module):
    """TiTok's ``LatentEncoder`` over ``PrunedBlocks``: the same submodules and names, latents read from the end."""

    def __init__(self, encoder: nn.Module, blocks: PrunedBlocks):
        super().__init__()
        self.patch_embed, self.latent_tokens = encoder.patch_embed, encoder.latent_tokens
        self.blocks, self.norm, self.to_code = blocks, encoder.norm, encoder.to_code

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latents = self.latent_tokens.expand(x.shape[0], -1, -1)  # [B, K, W]
        out = self.blocks(torch.cat([self.patch_embed(x), latents], dim=1))
        return self.to_code(self.norm(out[:, -latents.shape[1]:]))  # [B, K, code_dim]


def _family(tokenizer: nn.Module) -> str:
    from zoo.image.seed.model import SEEDTokenizer
    from zoo.image.titok.model import TiTokTokenizer

    if isinstance(tokenizer, TiTokTokenizer):
        return "titok"
    if isinstance(tokenizer, SEEDTokenizer):
        return "seed"
    raise ZooError(f"prune_encoder: expected a TiTokTokenizer or SEEDTokenizer (titok-fmnist, seed-fmnist), "
                   f"got {type(tokenizer).__name__}")


def _blocks(tokenizer: nn.Module) -> nn.Module:
    return tokenizer.encoder.blocks if _family(tokenizer) == "titok" else tokenizer.encoder


def default_layers(tokenizer: nn.Module) -> list[int]:
    """The blocks pruned when ``layers`` is not given (module docstring)."""
    depth = len(_blocks(tokenizer))
    if _family(tokenizer) == "titok":
        return list(range((depth - 1) // 2, depth - 1))
    return list(range(depth // 2, depth))


def prune_encoder(tokenizer: nn.Module, keep_ratio: float, layers: list[int] | tuple[int, ...] | None = None,
                  method: str = "zero-tprune", seed: int = 0, iterations: int = 10,
                  similarity_share: float = 0.5) -> nn.Module:
    """A copy of ``tokenizer`` (TiTok or SEED) whose ``encode`` runs the pruned encoder; the original is untouched."""
    family = _family(tokenizer)
    if method not in METHODS:
        raise ZooError(f"prune_encoder: method must be one of {METHODS}, got {method!r}")
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)) or not 0.0 < keep_ratio <= 1.0:
        raise ZooError(f"prune_encoder: keep_ratio must be a number in (0, 1], got {keep_ratio!r}")
    depth = len(_blocks(tokenizer))
    layers = default_layers(tokenizer) if layers is None else sorted({int(i) for i in layers})
    if any(not 0 <= i < depth for i in layers):
        raise ZooError(f"prune_encoder: layers must be block indices in [0, {depth}), got {layers}")
    pruned = copy.deepcopy(tokenizer).eval()
    latent = pruned.num_tokens if family == "titok" else 0
    blocks = PrunedBlocks(_blocks(pruned), keep_ratio, layers, method, latent, seed, iterations, similarity_share)
    if family == "titok":
        pruned.encoder = PrunedLatentEncoder(pruned.encoder, blocks)
    else:
        pruned.encoder = blocks
    return pruned


def _patch_embed(tokenizer: nn.Module) -> nn.Module:
    return tokenizer.encoder.patch_embed if _family(tokenizer) == "titok" else tokenizer.patch_embed


def token_schedule(tokenizer: nn.Module) -> list[int]:
    """Patch tokens entering each encoder block, and after the last one (``[depth + 1]``), pruned or not."""
    blocks, n_patches = _blocks(tokenizer), _patch_embed(tokenizer).position.shape[0]
    if isinstance(blocks, PrunedBlocks):
        return blocks.token_schedule(n_patches)
    return [n_patches] * (len(blocks) + 1)


def encoder_flops(tokenizer: nn.Module) -> int:
    """Multiply-adds of one image's ``encode_latent`` (patch embedding to the quantiser's input), selection included.

    Norms, activations and softmaxes are left out, as ``TokenPrunedViT.flops`` leaves them out; for SEED the causal
    Q-Former counts too, since its cross-attention reads the (fewer) patch features.
    """
    family = _family(tokenizer)
    blocks, conv = _blocks(tokenizer), _patch_embed(tokenizer).proj
    counts = token_schedule(tokenizer)
    width, first = conv.out_channels, next(iter(blocks))
    heads, hidden = first.attn.num_heads, first.mlp.fc1.out_features
    total = counts[0] * conv.in_channels * width * conv.kernel_size[0] * conv.kernel_size[1]
    latent = tokenizer.num_tokens if family == "titok" else 0
    for index in range(len(blocks)):
        n_in, n_out = counts[index] + latent, counts[index + 1] + latent
        total += 4 * n_in * width * width + 2 * n_in * n_in * width + 2 * n_out * width * hidden
        if n_out < n_in:
            total += _selection_flops(blocks, n_in, n_out, heads, width)
    code_dim = tokenizer.quantize.code_dim
    if family == "titok":
        return total + latent * width * code_dim
    queries, memory = tokenizer.num_tokens, counts[-1]
    for layer in tokenizer.qformer.layers:
        total += 4 * queries * width * width + 2 * queries * queries * width  # causal self-attention
        total += 2 * queries * width * width + 2 * memory * width * width + 2 * queries * memory * width  # cross
        total += 2 * queries * width * layer.mlp.fc1.out_features
    return total + queries * (width * width + width * code_dim)  # Linear-Tanh-Linear to code_dim


def _selection_flops(blocks: PrunedBlocks, n_in: int, n_out: int, heads: int, width: int) -> int:
    if blocks.method == "zero-tprune":
        patches = n_in - blocks.latent
        half = patches // 2
        similarity = half * (patches - half) * width if round(blocks.similarity_share * (n_in - n_out)) else 0
        return 2 * blocks.iterations * heads * n_in * n_in + similarity  # WPR twice (I', I) + key similarities
    if blocks.method == "topk":
        return heads * n_in * n_in
    return 0
