"""k-means units over frozen feature models (zoo/audio/kmeans/): HF HuBERT / WavLM with random tiny configs, the
zoo's BEATs SSL model, fitting from a recipe, save / load of the centroids."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import zoo
from zoo.audio.kmeans.fit import fit_recipe
from zoo.audio.kmeans.units import KMeansUnits
from zoo.errors import ZooError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_HF = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
           "conv_dim": [16, 16], "conv_stride": [5, 4], "conv_kernel": [10, 8], "num_conv_pos_embeddings": 16,
           "num_conv_pos_embedding_groups": 2}


def _clips(lengths=(16_000, 9_000, 4_000), seed=0):
    generator = torch.Generator().manual_seed(seed)
    audio = torch.zeros(len(lengths), max(lengths))
    t = torch.arange(max(lengths)) / 16_000
    for row, length in enumerate(lengths):
        audio[row, :length] = 0.3 * torch.sin(2 * math.pi * (220 + 170 * row) * t[:length])
        audio[row, :length] += 0.05 * torch.randn(length, generator=generator)
    return audio, torch.tensor(lengths)


@pytest.mark.parametrize("kind", ["hubert", "wavlm"])
def test_hf_units_are_the_nearest_centroid_of_the_chosen_hidden_layer(kind):
    import transformers

    units = KMeansUnits(backbone={"kind": kind, "config": TINY_HF, "seed": 0}, layer=1, k=8, dim=32)
    audio, lengths = _clips()
    summary = units.fit([audio[i, : int(lengths[i])] for i in range(3)], n_init=2, max_iter=20)
    tokens = units.encode(audio, lengths)
    assert summary["frames"] == int(tokens.lengths.sum())  # every frame of the three clips
    # the reference: transformers' model (same seed, same config) on each clip, hidden_states[1], argmin distance
    model_cls = transformers.HubertModel if kind == "hubert" else transformers.WavLMModel
    config_cls = transformers.HubertConfig if kind == "hubert" else transformers.WavLMConfig
    torch.manual_seed(0)
    reference = model_cls(config_cls(**TINY_HF)).eval()
    for row in range(3):
        with torch.no_grad():
            hidden = reference(audio[row : row + 1, : int(lengths[row])], output_hidden_states=True).hidden_states[1][0]
        n = hidden.shape[0]
        assert int(tokens.lengths[row]) == n and (tokens.ids[row, n:] == -1).all()
        expected = torch.cdist(hidden.double(), units.centroids.double()).argmin(1)
        assert torch.equal(tokens.ids[row, :n], expected)
    assert units.frame_rate == 16_000 / 20 and units.vocab_size == 8
    assert len(torch.unique(tokens.ids[tokens.ids >= 0])) > 1


def test_fit_finds_planted_clusters_and_round_trips(tmp_path):
    units = KMeansUnits(backbone={"kind": "hubert", "config": TINY_HF, "seed": 0}, layer=2, k=3, dim=32)
    # frames drawn around three known points: MiniBatchKMeans must find them (fit on the features directly)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 32)) * 10
    frames = np.concatenate([c + 0.1 * rng.normal(size=(200, 32)) for c in centres]).astype(np.float32)
    units.collect_frames = lambda *args, **kwargs: frames
    units.fit([], n_init=3, max_iter=50)
    found = units.centroids.numpy()
    distance = np.linalg.norm(found[:, None] - centres[None], axis=-1).min(axis=0)
    assert distance.max() < 0.1
    units.save_pretrained(tmp_path / "units")
    again = zoo.load(str(tmp_path / "units"))
    assert torch.equal(again.centroids, units.centroids)
    audio, lengths = _clips()
    assert torch.equal(again.encode(audio, lengths).ids, units.encode(audio, lengths).ids)


def test_beats_units_and_recipe_fit(tmp_path, monkeypatch):
    from zoo.data import DATASETS

    monkeypatch.setitem(DATASETS, "espeak-phones", "zoo.data.phonemes:espeak_phones")
    recipe = tmp_path / "kmeans.yaml"
    recipe.write_text(
        "name: kmeans-test\nseed: 0\ndata: {train: 'espeak-phones:languages=en+de,per_language=10,words=1'}\n"
        "model: {target: zoo.audio.kmeans.units:KMeansUnits,\n"
        "        config: {backbone: beats-ssl2, layer: 2, k: 16, dim: 128}}\n"
        "fit: {n_init: 1, max_iter: 20}\n"
    )
    final = fit_recipe(recipe, out_dir=tmp_path / "run")
    units = zoo.load(str(final))
    audio, lengths = _clips((16_000, 6_000))
    tokens = units.encode(audio, lengths)
    # BEATs patches: 8 bands per 160 ms column, 50 units/s, the same count as beats-ssl2's own tokens
    own = zoo.load("beats-ssl2", pretrained=True).encode(audio, lengths)
    assert tokens.lengths.tolist() == own.lengths.tolist() and units.bands == 8 and units.frame_rate == 50.0
    frames, counts = units.features(audio, lengths)
    ssl = zoo.load("beats-ssl2", pretrained=True)
    patches, _, pad = ssl.embed_patches(audio, lengths)
    with torch.no_grad():
        from zoo.audio.beats.transformer import attention_mask

        x = patches
        for block in ssl.encoder.blocks[:2]:
            x = block(x, attn_mask=attention_mask(pad))
    assert torch.allclose(frames[0, : int(counts[0])], x[0, : int(counts[0])], atol=1e-5)
    # a padded item gives its units alone
    alone = units.encode(audio[1:, :6000])
    assert torch.equal(alone.ids[0], tokens.ids[1, : int(tokens.lengths[1])])


def test_zoo_train_fits_a_kmeans_recipe_like_its_own_fitter(tmp_path, monkeypatch):
    from zoo.data import DATASETS
    from zoo.train import train

    monkeypatch.setitem(DATASETS, "espeak-phones", "zoo.data.phonemes:espeak_phones")
    recipe = {"name": "kmeans-train", "seed": 0,
              "data": {"train": "espeak-phones:languages=en+de,per_language=4,words=1"},
              "model": {"target": "zoo.audio.kmeans.units:KMeansUnits",
                        "config": {"backbone": "beats-ssl2", "layer": 1, "k": 8, "dim": 128}},
              "fit": {"n_init": 1, "max_iter": 10}}
    trained = zoo.load(str(train({**recipe, "output_dir": str(tmp_path / "train")})))
    (tmp_path / "k.yaml").write_text(json.dumps(recipe))
    fitted = zoo.load(str(fit_recipe(tmp_path / "k.yaml", out_dir=tmp_path / "fit")))
    assert torch.equal(trained.centroids, fitted.centroids)
    log = [json.loads(line) for line in (tmp_path / "train" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["event"] == "end" and log[-1]["fit"]["frames"] > 0
    with pytest.raises(ZooError, match=r"unknown option\(s\) \['epochs'\]"):
        train({**recipe, "fit": {"epochs": 3}, "output_dir": str(tmp_path / "bad")})
    with pytest.raises(ZooError, match=r"LiBTokenizer.fit does not take \[.epochs.\]"):
        train({"name": "b", "data": {"train": "fortunes:en"}, "model": {"name": "lib"}, "fit": {"epochs": 3},
               "output_dir": str(tmp_path / "bad-text")})


def test_bad_configs_say_what_is_wrong():
    with pytest.raises(ZooError, match="k must be >= 2"):
        KMeansUnits(k=1)
    with pytest.raises(ZooError, match="backbone kind"):
        _ = KMeansUnits(backbone={"kind": "cpc", "config": {}}).backbone
    with pytest.raises(ZooError, match="needs a revision"):
        _ = KMeansUnits(backbone={"kind": "hubert", "repo": "facebook/hubert-base-ls960"}).backbone
    units = KMeansUnits(backbone={"kind": "hubert", "config": TINY_HF, "seed": 0}, layer=1, k=4, dim=16)
    with pytest.raises(ZooError, match="32 wide, config dim is 16"):
        units.encode(torch.zeros(1, 8000))
    with pytest.raises(ZooError, match="unknown option"):
        units.fit([], clusters=3)


def test_shipped_kmeans_units_use_their_codebook():
    units = zoo.load("kmeans-beats-ssl2", pretrained=True)
    audio, lengths = _clips((32_000,))
    ids = units.encode(audio, lengths).ids
    assert units.vocab_size == 100 and units.centroids.abs().sum() > 0
    assert len(torch.unique(ids[ids >= 0])) > 5
