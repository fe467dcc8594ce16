"""TokenGenerator and the image-tokens cache: ids equal encode(), cache keyed by weights, a frozen tokenizer,
training on cached tokens (overfits one grid exactly), seeded sampling, save / load, a two-stage recipe."""

import pytest
import torch

import zoo
from zoo.data import load_dataset
from zoo.data.tokens import image_tokens, load_frozen_tokenizer, tokenizer_fingerprint
from zoo.errors import ZooError
from zoo.generators.token_generator import TokenGenerator
from zoo.image.vq.model import VQTokenizer

TINY_TOKENIZER = {"channels": 8, "channel_mult": [1, 2, 2], "num_res_blocks": 1, "z_channels": 8, "attention": False,
                  "quantizer": {"kind": "vq", "codebook_size": 8, "code_dim": 4}}  # digits 8x8 -> 2x2 ids
TINY_GPT = {"depth": 1, "heads": 2, "dim": 32}


@pytest.fixture
def tokenizer_dir(tmp_path):
    return VQTokenizer(**TINY_TOKENIZER).save_pretrained(tmp_path / "tok")


def generator(tokenizer_dir, **options) -> TokenGenerator:
    options = {"gpt": TINY_GPT, "num_classes": 10, "image_size": 8, **options}
    return TokenGenerator(str(tokenizer_dir), **options)


def test_image_tokens_are_the_tokenizers_ids_and_are_encoded_once(tokenizer_dir, monkeypatch):
    tokens = image_tokens(str(tokenizer_dir), data="digits", limit=20)
    tok = zoo.load(tokenizer_dir)
    images = load_dataset("digits", split="train", limit=20)
    expected = tok.encode(torch.stack([images[i]["image"] for i in range(20)]))
    assert len(tokens) == 20 and tokens.path.is_file()
    assert torch.equal(torch.stack([tokens[i]["tokens"] for i in range(20)]), expected)
    item = tokens[3]
    assert item["tokens"].dtype == torch.long and item["label"] == images[3]["label"]
    assert item["tokens_of"] == tokenizer_fingerprint(tok)

    import zoo.data.tokens as module

    monkeypatch.setattr(module, "encode_dataset", lambda *a, **k: pytest.fail("encoded again instead of the cache"))
    again = image_tokens(str(tokenizer_dir), data="digits", limit=20)
    assert again.path == tokens.path and torch.equal(again.tokens, tokens.tokens)


def test_other_weights_or_other_data_get_their_own_cache(tokenizer_dir, tmp_path):
    first = image_tokens(str(tokenizer_dir), data="digits", limit=8)
    tok = zoo.load(tokenizer_dir)
    with torch.no_grad():
        tok.decoder.conv_out.weight.add_(1.0)  # a decoder change still changes the fingerprint
    other_dir = tok.save_pretrained(tmp_path / "tok2")
    assert image_tokens(str(other_dir), data="digits", limit=8).path != first.path
    assert image_tokens(str(tokenizer_dir), data="digits", limit=8, split="val").path != first.path
    assert image_tokens(str(tokenizer_dir), data="digits", limit=9).path != first.path


def test_image_tokens_errors(tokenizer_dir):
    with pytest.raises(ZooError, match="needs an image tokenizer"):
        load_frozen_tokenizer("byte")
    with pytest.raises(ZooError, match="no such checkpoint folder"):
        load_frozen_tokenizer("runs/does-not-exist/final")
    with pytest.raises(ZooError, match="must name an image dataset"):
        image_tokens(str(tokenizer_dir), data={"name": "image-tokens", "tokenizer": str(tokenizer_dir)})
    with pytest.raises(ZooError, match="limit must be a positive integer"):
        image_tokens(str(tokenizer_dir), data="digits", limit=0)


def test_the_tokenizer_is_frozen_and_answers_encode_decode(tokenizer_dir):
    gen = generator(tokenizer_dir)
    tok = zoo.load(tokenizer_dir)
    assert gen.grid == (2, 2) and gen.length == 4 and gen.vocab_size == 8
    assert not any(p.requires_grad for p in gen.tokenizer.parameters())
    assert any(p.requires_grad for p in gen.gpt.parameters())
    gen.train()
    assert gen.gpt.training and not gen.tokenizer.training
    x = torch.rand(3, 3, 8, 8)
    assert torch.equal(gen.encode(x), tok.encode(x))
    assert torch.equal(gen.decode(tok.encode(x)), tok.decode(tok.encode(x)))
    assert torch.equal(gen.codebook, tok.codebook)
    assert any(name.startswith("tokenizer.") for name in gen.state_dict())  # the export is complete


def test_training_losses_check_their_tokens(tokenizer_dir):
    gen = generator(tokenizer_dir).eval()  # no class dropout: losses are deterministic
    tokens = image_tokens(str(tokenizer_dir), data="digits", limit=4)
    from zoo.data import collate

    batch = collate([tokens[i] for i in range(4)])
    losses = gen.training_losses(batch, 0)
    assert losses["loss"].requires_grad and torch.isfinite(losses["loss"])
    assert losses["bits_per_token"] == pytest.approx(losses["loss"].item() / torch.log(torch.tensor(2.0)).item())
    # From images, encoded on the fly: the same loss.
    images = load_dataset("digits", split="train", limit=4)
    from_images = gen.training_losses(collate([images[i] for i in range(4)]), 0)
    assert from_images["loss"].item() == pytest.approx(losses["loss"].item(), rel=1e-5)
    with pytest.raises(ZooError, match="tokens of another tokenizer"):
        gen.training_losses({**batch, "tokens_of": ["someone-else"] * 4}, 0)
    with pytest.raises(ZooError, match=r"expected grids of shape \[2, 2\]"):
        gen.training_losses({"tokens": torch.zeros(4, 3, 3, dtype=torch.long), "label": batch["label"]}, 0)
    with pytest.raises(ZooError, match="has no 'label'"):
        gen.training_losses({"tokens": batch["tokens"]}, 0)
    with pytest.raises(ZooError, match="neither 'tokens' nor 'image'"):
        gen.training_losses({"label": batch["label"]}, 0)
    with pytest.raises(ZooError, match="gpt.vocab_size is set by the tokenizer"):
        TokenGenerator(str(tokenizer_dir), gpt={**TINY_GPT, "vocab_size": 3}, image_size=8)


def test_a_generator_trained_on_one_grid_per_class_samples_exactly_those_grids(tokenizer_dir):
    torch.manual_seed(0)
    gen = generator(tokenizer_dir, num_classes=2, gpt={**TINY_GPT, "class_dropout": 0.0})
    grids = torch.tensor([[[1, 2], [3, 4]], [[7, 7], [0, 5]]])  # class 0, class 1
    batch = {"tokens": grids.repeat(8, 1, 1), "label": torch.tensor([0, 1]).repeat(8)}
    optimizer = torch.optim.AdamW(gen.gpt.parameters(), lr=1e-2)
    gen.train()
    for step in range(150):
        loss = gen.training_losses(batch, step)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    labels = torch.tensor([0, 1, 1, 0])
    ids = gen.sample_ids(4, labels=labels, temperature=1.0, seed=3)
    assert torch.equal(ids, grids[labels])
    assert torch.equal(gen.sample_ids(4, labels=labels, top_k=1), grids[labels])
    images = gen.sample(4, labels=labels, top_k=1)
    assert torch.allclose(images, gen.tokenizer.decode(grids[labels]))
    assert gen.training  # sampling restores the mode it found


def test_sampling_is_seeded_and_checked(tokenizer_dir, tmp_path):
    gen = generator(tokenizer_dir).eval()
    a = gen.sample(6, seed=1)
    assert a.shape == (6, 3, 8, 8) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, gen.sample(6, seed=1))
    assert not torch.equal(gen.sample_ids(64, seed=1), gen.sample_ids(64, seed=2))
    assert gen.sample(0).shape == (0, 3, 8, 8)
    assert gen.sample(2, labels=[3, 4], guidance_scale=2.0, seed=1).shape == (2, 3, 8, 8)  # classifier-free guidance
    with pytest.raises(ZooError, match=r"labels must have shape \[3\]"):
        gen.sample(3, labels=[0, 1])
    with pytest.raises(ZooError, match=r"ints in \[0, 10\)"):
        gen.sample(2, labels=[0, 10])
    with pytest.raises(ZooError, match="unconditional"):
        generator(tokenizer_dir, num_classes=0).sample(2, labels=[0, 1])
    # Save / load: the same samples from the folder.
    folder = gen.save_pretrained(tmp_path / "gen")
    loaded = zoo.load(folder)
    assert isinstance(loaded, TokenGenerator)
    assert torch.equal(loaded.sample(6, seed=1), a)


def test_a_two_stage_recipe_trains_tokenizer_then_generator_on_cached_tokens(tmp_path):
    from zoo.train import load_recipe
    from zoo.train.stages import run_plan

    data = {"name": "digits", "limit": 32}
    recipe = {
        "output_dir": str(tmp_path / "run"),
        "log": {"every": 1, "progress": False},
        "steps": 3,
        "batch_size": 8,
        "stages": [
            {"name": "tok", "data": {"train": data},
             "model": {"target": "zoo.image.vq.model:VQTokenizer", "config": TINY_TOKENIZER}},
            {"name": "gen", "data": {"train": {"name": "image-tokens", "tokenizer": "stage:tok", "data": data}},
             "model": {"target": "zoo.generators.token_generator:TokenGenerator",
                       "config": {"tokenizer": "stage:tok", "gpt": TINY_GPT, "num_classes": 10, "image_size": 8}}},
        ],
    }
    final = run_plan(load_recipe(recipe))
    gen, tok = zoo.load(final), zoo.load(tmp_path / "run" / "tok" / "final")
    assert isinstance(gen, TokenGenerator) and gen.config["tokenizer"] == str((tmp_path / "run/tok/final").resolve())
    for name, tensor in tok.state_dict().items():  # frozen: training the generator left the tokenizer as it was
        assert torch.equal(gen.state_dict()[f"tokenizer.{name}"], tensor)
    assert gen.sample(2, seed=0).shape == (2, 3, 8, 8)
