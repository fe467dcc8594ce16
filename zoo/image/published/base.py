"""The contract around a published VQ image tokenizer whose network a maintained library implements.

    images [B, 3, H, W] in [0, 1] -> pixels = (x * 255 * rescale_factor - mean) / std   (the model's processor)
        -> the wrapped model's encoder + quantiser -> ids [B, H / f, W / f]
    ids [B, h, w] -> the wrapped model's decoder -> pixels -> (pixels * std + mean) / (255 * rescale_factor)
        -> clamped to [0, 1] -> images [B, 3, H, W]

The network is the library's class (``hf_model``) built from its config class (``hf_config``) with the
entry's ``vq_config``, so ``config`` records a plain JSON dict that rebuilds it. The normalisation is the
one the authors' image processor applies (``rescale_factor``, ``image_mean``, ``image_std``), written out in
the entry, so no processor file is read. Resizing and cropping are the data's job (the entry's ``inputs``).

Weights: a folder saved here loads strictly as any zoo checkpoint. An official safetensors file is read
tensor by tensor (``safe_open``: only the VQ's tensors of a whole-model file are read), mapped to this
wrapper's names by the family's ``convert`` (timm's ``checkpoint_filter_fn`` pattern) and loaded strictly;
half-precision tensors are widened to float32 (exact), nothing is ever narrowed. Pickled checkpoints
(``.pt``, ``.ckpt``, ``.bin``) are never unpickled here: a pinned download in ``$ZOO_CACHE`` is converted
once by ``zoo.image.published.convert`` (``torch.load(weights_only=True)``) into a safetensors file beside
it, and any other pickle is refused with the command that converts it into a folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from zoo.errors import ZooError
from zoo.image.vq.vqgan import checked_image_grid
from zoo.pretrained import PICKLE_SUFFIXES, atomic_write_bytes, read_weights_only
from zoo.targets import import_library_class
from zoo.tokenizer import NeuralTokenizer, TokenizerOutput, check_ids

# The VQ model's own submodules: a key of an official file belongs to the tokenizer when, past its prefix,
# it starts with one of these.
VQ_PARTS = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
# Tensors that carry no computation (training statistics); dropped when reading official files.
UNUSED_SUFFIXES = ("quantize.codebook_used",)
# Dtypes an official file may hold: widening them to float32 is exact.
WIDENED = (torch.float32, torch.bfloat16, torch.float16)
# A pinned pickled download's conversion, written next to it in $ZOO_CACHE (model.pt -> model.pt.zoo.safetensors).
CONVERTED_SUFFIX = ".zoo.safetensors"


class LightningCallbackKey:
    """An inert stand-in for the callback classes PyTorch Lightning 1.x checkpoints key their callback states by.

    Lightning 1.x writes ``checkpoint["callbacks"] = {type(callback): state}``: the class is pickled by reference
    only (its import path), to serve as a dict key beside the tensors. ``torch.load(weights_only=True)`` refuses
    any reference it does not know; reading the reference as this class instead imports nothing from Lightning
    and runs no code (the states are plain values, dropped with everything but the state dict)."""

    def __init__(self, *args, **kwargs):
        pass


# Lightning's callbacks whose class references appear as keys of a checkpoint's "callbacks" (1.x releases).
LIGHTNING_CALLBACK_KEYS = tuple(f"{package}.callbacks.{module}.{name}"
                                for package in ("pytorch_lightning", "lightning.pytorch")
                                for module, name in (("model_checkpoint", "ModelCheckpoint"),
                                                     ("early_stopping", "EarlyStopping")))


def read_authors_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an authors' checkpoint, read with ``torch.load(weights_only=True)`` only
    (``zoo.pretrained.read_weights_only``). Two non-tensor globals are admitted, neither of which runs code:
    ``argparse.Namespace``, the attribute bag LlamaGen's training checkpoints keep their arguments in, and the
    class references Lightning 1.x checkpoints (taming-transformers', Chameleon's ``vqgan.ckpt``) key their
    callback states by, read as the inert ``LightningCallbackKey``. Anything else is refused with the reason."""
    import argparse

    allowed = (argparse.Namespace, *((LightningCallbackKey, name) for name in LIGHTNING_CALLBACK_KEYS))
    return read_weights_only(path, allowed_classes=allowed)


def import_class(target: str) -> type:
    """``"package.module:Class"`` of the wrapped library (code zoo chose, not a data file's target)."""
    return import_library_class(target, "these tokenizers need a transformers that has the class "
                                "(tested with 5.25; pip install 'zoo[hf]')")


def vq_tensors(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]) -> tuple[str, dict[str, torch.Tensor]]:
    """The VQ model's tensors of ``state`` under the first of ``prefixes`` that holds any, with the prefix removed.

    ``""`` is the bare model (a file saved from the VQ class itself); ``"model.vqmodel."`` the VQ inside a
    whole transformers model; ``"gen_vision_model."`` Janus's own layout, and so on per family."""
    for prefix in prefixes:
        found = {key[len(prefix):]: value for key, value in state.items()
                 if key.startswith(prefix) and key[len(prefix):].startswith(VQ_PARTS)}
        if found:
            return prefix, found
    sample = sorted(state)[:6]
    raise ZooError(f"no VQ tokenizer tensors found under any of the prefixes {list(prefixes)} "
                   f"(the file's first keys: {sample})")


def read_safetensors(path: Path, prefixes: tuple[str, ...], tensors: bool = True) -> tuple[str, dict]:
    """The prefix the VQ sits under in a (possibly whole-model) safetensors file, and its tensors keyed without
    the prefix; only those tensors are read (``tensors=False``: their names only, values None)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            prefix, names = vq_tensors(dict.fromkeys(handle.keys()), prefixes)
            return prefix, {name: handle.get_tensor(prefix + name) if tensors else None for name in names}
    except SafetensorError as err:
        raise ZooError(f"{path}: not a valid safetensors file ({err})") from None
    except ZooError as err:
        raise ZooError(f"{path}: {err}") from None


def converted_source_sha256(path: Path) -> str | None:
    """The source sha256 a conversion recorded in its safetensors metadata (None when absent or unreadable)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return (handle.metadata() or {}).get("source_sha256")
    except (SafetensorError, OSError):
        return None


class PublishedImageTokenizer(NeuralTokenizer):
    """A published VQ image tokenizer: the wrapped library model is ``self.model``; frozen (no training here)."""

    modality = "image"
    hf_config: ClassVar[str] = ""  # "transformers.models.x.configuration_x:XVQVAEConfig"
    hf_model: ClassVar[str] = ""  # "transformers.models.x.modeling_x:XVQVAE"
    # Where the VQ sits in the files this family reads, tried in order; "model." first (this wrapper's own).
    source_prefixes: ClassVar[tuple[str, ...]] = ("model.", "", "model.vqmodel.", "vqmodel.")
    max_tokens: ClassVar[int] = 128 * 128

    def __init__(self, vq_config: dict, image_size: int, rescale_factor: float = 1 / 255,
                 image_mean: tuple[float, ...] = (0.5, 0.5, 0.5), image_std: tuple[float, ...] = (0.5, 0.5, 0.5),
                 seed: int = 0):
        super().__init__()
        if len(image_mean) != 3 or len(image_std) != 3 or min(image_std) <= 0 or rescale_factor <= 0:
            raise ZooError(f"{type(self).__name__}: image_mean / image_std must be 3 values (std > 0) and "
                           f"rescale_factor > 0, got {image_mean}, {image_std}, {rescale_factor}")
        self.image_size = int(image_size)
        self.model = self._build(vq_config, seed)
        self.downsample = self._downsample_factor()
        if self.image_size % self.downsample:
            raise ZooError(f"{type(self).__name__}: image_size {image_size} is not a multiple of the downsampling "
                           f"factor {self.downsample}")
        # pixels = x * scale - shift, per channel: the processor's rescale then normalise, folded into one affine map
        scale = torch.tensor([255 * rescale_factor / s for s in image_std]).view(1, 3, 1, 1)
        shift = torch.tensor([m / s for m, s in zip(image_mean, image_std)]).view(1, 3, 1, 1)
        self.register_buffer("pixel_scale", scale, persistent=False)
        self.register_buffer("pixel_shift", shift, persistent=False)

    def _downsample_factor(self) -> int:
        """Pixels per id along each side: one halving per level past the first."""
        return 2 ** (len(self.model.config.channel_multiplier) - 1)

    @property
    def family(self) -> str:
        """The wrapped model's own name for itself (its config's ``model_type``)."""
        return str(self.model.config.model_type)

    def _build(self, vq_config: dict, seed: int):
        """The library's model from ``vq_config``, seeded: ``zoo.load(name)`` always builds the same network."""
        config_cls, model_cls = import_class(self.hf_config), import_class(self.hf_model)
        known = set(config_cls().to_dict())
        unknown = sorted(set(vq_config) - known)
        if unknown:  # transformers' configs accept any key silently; a typo must not build a different model
            raise ZooError(f"{type(self).__name__}: vq_config keys {unknown} are not fields of "
                           f"{config_cls.__name__} (it takes {sorted(known - {'transformers_version'})})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = model_cls(config_cls(**vq_config))
        return model.float().eval().requires_grad_(False)

    # -- contract ------------------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return int(self.model.quantize.embedding.num_embeddings)

    @property
    def tokens_per_image(self) -> int:
        """Ids per image at the native ``image_size``."""
        return (self.image_size // self.downsample) ** 2

    @property
    def codebook(self) -> torch.Tensor:
        """``[K, D]``: the code vectors the decoder reads (what ``embed`` returns)."""
        return self.model.quantize.embedding.weight

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, h, w]`` -> code vectors ``[B, h, w, D]`` as the decoder reads them."""
        return self.codebook[check_ids(ids, self.vocab_size).to(self.codebook.device)]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` (sides multiples of the downsampling factor) -> ids ``[B, h, w]``."""
        x = checked_image_grid(x, self.downsample, self.max_tokens)
        grid = (x.shape[-2] // self.downsample, x.shape[-1] // self.downsample)
        if x.shape[0] == 0:  # no images: no ids (Emu3's network cannot reshape an empty batch)
            return torch.zeros(0, *grid, dtype=torch.long)
        with torch.no_grad():
            ids = self.ids_from_pixels(self.to_pixels(x))
        return ids.view(x.shape[0], x.shape[-2] // self.downsample, x.shape[-1] // self.downsample)

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, h, w]`` -> images ``[B, 3, h * f, w * f]`` in ``[0, 1]``."""
        if not self.has_decoder:
            raise ZooError(f"{type(self).__name__} has no decoder: {self.family}'s library class "
                           "ships the encoder and quantiser only")
        ids = check_ids(ids, self.vocab_size).to(self.device)
        if ids.ndim != 3:
            raise ZooError(f"ids: expected shape [B, h, w], got {list(ids.shape)}")
        with torch.no_grad():
            return self.from_pixels(self.pixels_from_ids(ids))

    def forward(self, x: torch.Tensor) -> TokenizerOutput:
        ids = self.encode(x)
        return TokenizerOutput(output=self.decode(ids) if self.has_decoder else None, indices=ids)

    def training_losses(self, batch: dict, step: int):
        raise ZooError(f"{type(self).__name__} wraps published weights and is used frozen; fine-tuning it is not "
                       "implemented in zoo")

    # -- the model's conventions -----------------------------------------------------------------------
    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` images -> what the model's image processor would give it."""
        return x.to(self.pixel_scale.device, torch.float32) * self.pixel_scale - self.pixel_shift

    def from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """The decoder's output -> ``[0, 1]`` images (the processor's inverse, clamped)."""
        return ((pixels + self.pixel_shift) / self.pixel_scale).clamp(0.0, 1.0)

    def ids_from_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Normalised pixels ``[B, 3, H, W]`` -> ids (any shape holding ``B * h * w`` values, row-major)."""
        raise ZooError(f"{type(self).__name__} does not define ids_from_pixels(pixels)")

    def pixels_from_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """ids ``[B, h, w]`` -> the decoder's output in the model's pixel range."""
        raise ZooError(f"{type(self).__name__} does not define pixels_from_ids(ids)")

    # -- weights ---------------------------------------------------------------------------------------
    @classmethod
    def rename(cls, name: str) -> str:
        """One tensor name of the authors' layout -> the library's (identity where the layouts agree)."""
        return name

    @classmethod
    def map_layout(cls, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The VQ's tensors (prefix removed) -> the library's layout where renaming names one by one is not enough
        (levels renumbered, tensors reshaped); identity where ``rename`` does it all."""
        return tensors

    @classmethod
    def convert(cls, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A state dict in any layout this family reads -> this wrapper's (``model.`` + the library's names)."""
        _, tensors = vq_tensors(state, cls.source_prefixes)
        return {"model." + cls.rename(name): tensor for name, tensor in cls.map_layout(tensors).items()
                if not name.endswith(UNUSED_SUFFIXES)}

    def _load_weights(self, path: Path) -> None:
        if path.suffix in PICKLE_SUFFIXES:
            from safetensors.torch import load_file

            converted = self._converted_download(path)
            return self.load_converted(load_file(str(converted)), f"{path} (converted: {converted.name})")
        prefix, _ = read_safetensors(path, self.source_prefixes, tensors=False)
        if prefix == "model.":  # a folder saved here: the standard strict loader and its checks
            return super()._load_weights(path)
        _, tensors = read_safetensors(path, (prefix,))
        self.load_converted(self.convert({prefix + name: tensor for name, tensor in tensors.items()}), str(path))

    def _converted_download(self, path: Path) -> Path:
        """A pinned download that is a pickle -> its safetensors conversion beside it, made once.

        Only files inside ``$ZOO_CACHE`` qualify: ``zoo.hub.resolve_weights`` put them there and checked their
        pin (published or first-use sha256) before this runs. The conversion reads them with
        ``torch.load(weights_only=True)`` (``zoo.pretrained.read_weights_only``) and records the source's sha256 in the
        converted file, which is redone when that no longer matches. Any other pickle is refused."""
        from zoo.hub import cache_dir, sha256_of

        try:
            path.resolve().relative_to(cache_dir().resolve())
        except ValueError:
            raise ZooError(f"{path}: a pickled checkpoint, which zoo.load never reads; convert it once with "
                           "`python -m zoo.image.published.convert SRC --to DIR NAME` and load DIR") from None
        converted = path.with_name(path.name + CONVERTED_SUFFIX)
        source_sha256 = sha256_of(path)
        if converted.is_file() and converted_source_sha256(converted) == source_sha256:
            return converted
        return write_converted(path, converted, type(self), source_sha256)

    def load_converted(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Load a converted state dict strictly; half precision is widened to float32, nothing else is cast."""
        for name, tensor in state.items():
            if tensor.is_floating_point() and tensor.dtype not in WIDENED:
                raise ZooError(f"{source}: tensor {name!r} is {tensor.dtype}; expected float32, bfloat16 or float16")
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ZooError(f"{source}: tensor {name!r} holds NaN/Inf values; refusing weights that cannot compute")
        own = self.state_dict()
        # BatchNorm's batch counter only matters in training; files saved without it still compute the same.
        state = {**{k: v for k, v in own.items() if k.endswith("num_batches_tracked")}, **state}
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        misshapen = [f"{k} {list(state[k].shape)} (expected {list(own[k].shape)})"
                     for k in own.keys() & state.keys() if state[k].shape != own[k].shape]
        if missing or unexpected or misshapen:
            raise ZooError(f"{source}: weights do not match {type(self).__name__}({self.family}): "
                           f"missing {missing[:6]}, unexpected {unexpected[:6]}, misshapen {misshapen[:6]}")
        self.load_state_dict(state, strict=True)

    def extra_repr(self) -> str:
        return (f"{self.family}, vocab_size={self.vocab_size}, f{self.downsample}, "
                f"{self.tokens_per_image} tokens at {self.image_size}px")


def write_converted(source: Path, destination: Path, family: type[PublishedImageTokenizer],
                    source_sha256: str) -> Path:
    """``source`` (a pinned pickled download) in ``family``'s names -> ``destination`` (safetensors), atomically.

    The tensors are stored as the file holds them (no cast); the strict load that follows checks names,
    shapes, dtypes and finiteness. ``source_sha256`` goes into the file's metadata, tying it to its source."""
    from safetensors.torch import save

    tensors = read_authors_checkpoint(source)
    state = {name: tensor.contiguous() for name, tensor in family.convert(tensors).items()}
    atomic_write_bytes(destination, save(state, metadata={"source": source.name, "source_sha256": source_sha256,
                                                          "converted_by": family.__name__}))
    return destination
