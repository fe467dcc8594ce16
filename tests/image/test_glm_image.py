"""GLM-Image's semantic tokenizer (issue 17) over transformers' GlmImageVisionModel + GlmImageVQVAE, on a tiny
random config of the same classes: ids equal the library's own path (``GlmImageModel.get_image_tokens`` of
``get_image_features`` on ``GlmImageImageProcessor``'s patches), the lookup is the cosine nearest code, there is no
decoder (one error), checkpoints round-trip exactly and a whole-model file's tensors load."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import zoo
from zoo.errors import ZooError

pytest.importorskip("transformers.models.glm_image", reason="this transformers has no GLM-Image (5.x has it)")

from zoo.image.published.glm_image import GlmImageVQTokenizer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

# 8px patches, a 4x4 grid of learned positions (interpolated to other grids), 2 blocks; the VQ's latent width is
# the ViT's hidden size, as in GLM-Image (1536)
VISION = {"depth": 2, "hidden_size": 32, "num_heads": 2, "image_size": 32, "patch_size": 8, "intermediate_size": 64}
VQ = {"embed_dim": 8, "num_embeddings": 64, "latent_channels": 32}
TEXT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2,
        "intermediate_size": 64, "vocab_size": 256, "vision_vocab_size": 80, "pad_token_id": 0, "eos_token_id": 1}


def _tok(seed: int = 0) -> GlmImageVQTokenizer:
    return GlmImageVQTokenizer(VISION, VQ, image_size=32, seed=seed)


def _images(height: int = 32, width: int = 48, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(1))


def _library_model(tok: GlmImageVQTokenizer):
    """transformers' whole GlmImageModel (tiny text model) holding the tokenizer's ViT and VQ."""
    from transformers.models.glm_image.configuration_glm_image import GlmImageConfig
    from transformers.models.glm_image.modeling_glm_image import GlmImageModel

    model = GlmImageModel(GlmImageConfig(text_config=TEXT, vision_config=VISION, vq_config=VQ)).eval()
    model.visual.load_state_dict(tok.model.visual.state_dict())
    model.vqmodel.load_state_dict(tok.model.vqmodel.state_dict())
    return model


def _processor_inputs(tok: GlmImageVQTokenizer, x: torch.Tensor) -> dict:
    from transformers import GlmImageImageProcessor

    processor = GlmImageImageProcessor(patch_size=VISION["patch_size"], temporal_patch_size=1, merge_size=1,
                                       image_mean=tok.config["image_mean"], image_std=tok.config["image_std"])
    # [0, 1] floats in, so no rescale; sides already multiples of the patch size, so no resize
    return processor(images=list(x), do_resize=False, do_rescale=False, return_tensors="pt")


def test_patches_equal_the_image_processors():
    tok, x = _tok(), _images()
    inputs = _processor_inputs(tok, x)
    packed, grid = tok.patches(tok.to_pixels(x))
    assert torch.equal(grid, inputs["image_grid_thw"])
    difference = (packed - inputs["pixel_values"]).abs().max().item()
    assert difference < 1e-6, f"max abs difference {difference}"  # measured 4.8e-07 (docs/image-published.md)


@pytest.mark.parametrize("height,width", [(32, 48), (16, 16)])
def test_ids_equal_the_librarys_own_path(height, width):
    tok, x = _tok(), _images(height, width)
    model, inputs = _library_model(tok), _processor_inputs(tok, x)
    with torch.no_grad():
        features = model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output
        theirs = model.get_image_tokens(features)  # one image at a time, row-major, concatenated
    ids = tok.encode(x)
    assert ids.shape == (2, height // 8, width // 8) and ids.dtype == torch.long
    assert torch.equal(ids.reshape(-1), theirs)


def test_ids_are_the_cosine_nearest_codes_of_the_projected_features():
    tok, x = _tok(), _images()
    with torch.no_grad():
        z = tok.model.vqmodel.quant_conv(tok.features(tok.to_pixels(x)))  # [B, D, h, w]
    z = F.normalize(z.permute(0, 2, 3, 1), dim=-1)
    nearest = (z @ tok.codebook.T).argmax(-1)  # unit vectors: largest cosine = smallest distance
    assert torch.equal(tok.encode(x), nearest)
    assert torch.allclose(tok.codebook.norm(dim=-1), torch.ones(VQ["num_embeddings"]))
    ids = tok.encode(x)
    assert torch.equal(tok.embed(ids), tok.codebook[ids])


def test_there_is_no_decoder_and_forward_says_so():
    tok = _tok()
    ids = tok.encode(_images())
    with pytest.raises(ZooError, match="no decoder.*diffusion transformer"):
        tok.decode(ids)
    out = tok(_images())
    assert out.output is None and torch.equal(out.indices, ids)
    assert not tok.has_decoder and tok.vocab_size == 64 and tok.downsample == 8 and tok.tokens_per_image == 16


def test_save_pretrained_and_zoo_load_round_trip_exactly(tmp_path):
    tok, x = _tok(seed=3), _images()
    loaded = zoo.load(tok.save_pretrained(tmp_path / "glm"))
    assert type(loaded) is GlmImageVQTokenizer and loaded.config == tok.config
    ours, theirs = tok.state_dict(), loaded.state_dict()
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert torch.equal(loaded.encode(x), tok.encode(x))
    assert not torch.equal(_tok(seed=4).encode(x), tok.encode(x))  # the seed builds another network


def test_a_whole_model_file_in_bfloat16_loads_only_the_tokenizer_tensors(tmp_path):
    from safetensors.torch import save_file

    source = _tok(seed=5)
    whole = {name: tensor.to(torch.bfloat16) for name, tensor in source.state_dict().items()}
    # what else GlmImageForConditionalGeneration's file holds: the language model and its head
    whole |= {"model.language_model.embed_tokens.weight": torch.zeros(4, 2), "lm_head.weight": torch.zeros(4, 2)}
    save_file(whole, str(tmp_path / "model.safetensors"))
    target = _tok(seed=6)
    target.load_weights(tmp_path / "model.safetensors")
    for name, tensor in target.state_dict().items():
        assert tensor.dtype == torch.float32 and torch.equal(tensor, whole[name].float()), name
    save_file({"encoder.conv_in.weight": torch.zeros(1)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ZooError, match="no GLM-Image tokenizer tensors"):
        target.load_weights(tmp_path / "other.safetensors")


def test_configs_that_cannot_be_glm_images_are_refused():
    with pytest.raises(ZooError, match="vision_config keys \\['patch'\\]"):
        GlmImageVQTokenizer({**VISION, "patch": 8}, VQ, image_size=32)
    with pytest.raises(ZooError, match="latent_channels \\(16\\) must equal vision_config hidden_size \\(32\\)"):
        GlmImageVQTokenizer(VISION, {**VQ, "latent_channels": 16}, image_size=32)
    with pytest.raises(ZooError, match="spatial_merge_size must be 1"):
        GlmImageVQTokenizer({**VISION, "spatial_merge_size": 2}, VQ, image_size=32)
    with pytest.raises(ZooError, match="multiple of the downsampling factor 8"):
        GlmImageVQTokenizer(VISION, VQ, image_size=36)
    with pytest.raises(ZooError):
        _tok().encode(_images(32, 36))  # sides must be multiples of the patch size
