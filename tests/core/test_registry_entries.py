"""Every registry entry, tested the same way: builds, round-trips through save/load bit-exactly,
honours its modality's encode/decode contract, takes the inputs it describes and carries a true card.
New entries are covered without new tests: sample inputs come from each entry's ``inputs``."""

from __future__ import annotations

import functools
import re

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo
from zoo.hub import remote_cache_path
from zoo.resources import resolve_resource
from zoo.tokenizer import AudioTokens

NAMES = zoo.list_tokenizers()


def _build(name: str):
    entry = zoo.registry.get(name)
    local = remote_cache_path(entry.weights)
    if local is not None and not local.is_file():  # tests never download (conftest: HF_HUB_OFFLINE)
        pytest.skip(f"{name}: its weights {entry.weights['path']} are not cached at {local}")
    return zoo.load(name, pretrained=entry.pretrained)


def _sample(name: str, batch: int = 2, height: int | None = None, width: int | None = None, samples: int | None = None):
    """A seeded input as the entry describes it: its native image side, or a second of audio (and at least a
    few shortest clips), values inside its range; text is a fixed set of hard strings."""
    entry = zoo.registry.get(name)
    spec = entry.inputs
    assert spec is not None, f"{name}: registry entry states no inputs"
    generator = torch.Generator().manual_seed(0)
    if entry.modality == "text":
        return ["", "hello world", "héllo 🌍 ١٢٣ 1234567 naïve\n\tend", "日本語のテキスト"]
    low, high = spec.get("range", [0, 1] if entry.modality == "image" else [-1, 1])
    if entry.modality == "image":
        shape = (batch, spec.get("channels", 3), height or spec["size"], width or height or spec["size"])
        return low + (high - low) * torch.rand(*shape, generator=generator)
    if entry.modality == "audio":
        samples = samples or max(spec["sample_rate"], 4 * spec.get("min_samples", 1))
        # A quiet signal: a tenth of the range around its middle.
        noise = torch.rand(batch, samples, generator=generator) * 2 - 1
        return (low + high) / 2 + (high - low) / 2 * 0.1 * noise
    raise AssertionError(entry.modality)


def _encode(tok, x):
    with torch.no_grad():
        if tok.modality == "audio":
            return tok.encode(x, lengths=torch.tensor([x.shape[1], x.shape[1] * 3 // 5]))
        return tok.encode(x)


def _same(a, b) -> bool:
    if isinstance(a, AudioTokens):
        return torch.equal(a.ids, b.ids) and torch.equal(a.lengths, b.lengths)
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def test_registry_is_not_empty():
    assert "byte" in NAMES
    assert set(zoo.list_tokenizers(modality="text")) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_entry_builds_with_its_declared_modality(name):
    entry = zoo.registry.get(name)
    tok = _build(name)
    assert tok.modality == entry.modality
    assert isinstance(tok, zoo.Tokenizer)
    assert tok.vocab_size > 0
    assert zoo.load(name).config == tok.config  # the seeded build has the same config


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip_is_exact(name, tmp_path):
    tok = _build(name)
    tok.save_pretrained(tmp_path / "ckpt")
    loaded = zoo.load(tmp_path / "ckpt")
    assert type(loaded) is type(tok)
    assert loaded.config == tok.config
    if isinstance(tok, torch.nn.Module):
        ours, theirs = tok.state_dict(), loaded.state_dict()
        assert ours.keys() == theirs.keys()
        for key in ours:
            assert torch.equal(ours[key], theirs[key]), key
    x = _sample(name)
    assert _same(_encode(tok, x), _encode(loaded, x))


@pytest.mark.parametrize("name", NAMES)
def test_modality_contract(name):
    tok = _build(name)
    x = _sample(name)
    encoded = _encode(tok, x)
    if tok.modality == "text":
        assert isinstance(encoded, list) and all(isinstance(row, list) for row in encoded)
        assert all(0 <= i < tok.vocab_size and isinstance(i, int) for row in encoded for i in row)
        assert tok.encode(x[1]) == encoded[1]
        assert tok.decode(encoded) == x
        return
    if tok.modality == "image":
        assert encoded.dtype == torch.long and encoded.shape[0] == 2 and encoded.ndim in (2, 3, 4)
        assert encoded.min() >= 0 and encoded.max() < tok.vocab_size
        if tok.has_decoder:
            with torch.no_grad():
                recon = tok.decode(encoded)
            assert recon.shape == x.shape and recon.dtype == x.dtype
            assert recon.min() >= 0 and recon.max() <= 1
        return
    assert isinstance(encoded, AudioTokens)
    ids, lengths = encoded.ids, encoded.lengths
    assert ids.dtype == torch.long and ids.shape[0] == 2 and ids.ndim in (2, 3)
    assert lengths.tolist()[0] == ids.shape[1] and lengths[1] < lengths[0]
    valid = ids[0]
    assert valid.min() >= 0 and valid.max() < tok.vocab_size
    assert tok.frame_rate > 0 and tok.sample_rate > 0
    # Padding does not change the tokens: the short item alone tokenizes to its prefix.
    short = x[1:, : x.shape[1] * 3 // 5]
    alone = _encode_single(tok, short)
    assert torch.equal(alone.ids[0, : int(alone.lengths[0])], ids[1, : int(lengths[1])])
    if not tok.has_decoder:
        with pytest.raises(zoo.ZooError, match="no decoder"):
            tok.decode(encoded)


def _encode_single(tok, x):
    with torch.no_grad():
        return tok.encode(x)


# -- what the entry says about itself: inputs and card ------------------------------------------------------


@functools.cache
def _built_once(name: str):
    """One build per entry for the read-only checks below (they only count parameters and encode)."""
    return _build(name)


@pytest.mark.parametrize("name", NAMES)
def test_entry_states_its_inputs_and_a_card_for_its_weights(name):
    entry = zoo.registry.get(name)
    assert entry.inputs is not None, f"{name}: add inputs (zoo/registry.py lists the keys per modality)"
    assert zoo.info(name)["inputs"] == entry.inputs and entry.describe_inputs()
    if entry.weights is not None:
        assert entry.card is not None, f"{name} ships weights but has no card"
        assert entry.card.get("license") and entry.card.get("data"), f"{name}: the card needs license and data"


@pytest.mark.parametrize("name", NAMES)
def test_card_parameters_count_the_built_model(name):
    card = zoo.registry.get(name).card or {}
    tok = _built_once(name)
    if not isinstance(tok, torch.nn.Module):
        assert "parameters" not in card, f"{name} is not a network: it has no parameters to count"
        return
    if zoo.registry.get(name).weights is not None:
        assert "parameters" in card, f"{name}: the card needs its parameter count"
    if "parameters" in card:
        assert card["parameters"] == sum(p.numel() for p in tok.parameters())


def _numbers_in(text: str) -> str:
    return re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 18,796 -> 18796


@pytest.mark.parametrize("name", [n for n in NAMES if (zoo.registry.get(n).card or {}).get("metrics")])
def test_card_metrics_are_copied_from_the_file_they_name(name):
    entry = zoo.registry.get(name)
    source = resolve_resource(entry.card["metrics_source"])  # package catalog paths: relative to the data root
    assert source.is_file(), f"{name}: metrics_source {source} does not exist"
    text = _numbers_in(source.read_text(encoding="utf-8"))
    assert name in text, f"{name} is not mentioned in {source}"
    for metric, value in entry.card["metrics"].items():
        assert re.search(rf"(?<![\d.]){re.escape(str(value))}(?!\d)", text), f"{name}: {metric} {value} not in {source}"


IMAGE_NAMES = zoo.list_tokenizers(modality="image")
AUDIO_NAMES = zoo.list_tokenizers(modality="audio")


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_image_entry_takes_the_sides_it_describes(name):
    spec = zoo.registry.get(name).inputs
    tok = _built_once(name)
    size, step = spec["size"], spec.get("multiple_of")
    if step is None:  # one side only
        with pytest.raises(zoo.ZooError):
            _encode_single(tok, _sample(name, batch=1, height=2 * size))
        return
    # The smallest side, and a non-square image one step wider than the native side.
    for height, width in [(spec.get("min_size", step),) * 2, (size, size + step)]:
        x = _sample(name, batch=1, height=height, width=width)
        ids = _encode_single(tok, x)
        assert ids.shape[0] == 1 and ids.dtype == torch.long
        if tok.has_decoder:
            with torch.no_grad():
                assert tok.decode(ids).shape == x.shape
    if step > 1:
        with pytest.raises(zoo.ZooError):
            _encode_single(tok, _sample(name, batch=1, height=size, width=size + 1))
    if "max_size" in spec:  # refused before any compute
        with pytest.raises(zoo.ZooError):
            _encode_single(tok, _sample(name, batch=1, height=spec["max_size"] + step))


@pytest.mark.parametrize("name", AUDIO_NAMES)
def test_audio_entry_has_the_rate_and_shortest_clip_it_describes(name):
    spec = zoo.registry.get(name).inputs
    tok = _built_once(name)
    assert tok.sample_rate == spec["sample_rate"]
    if "min_samples" in spec:
        min_samples = spec["min_samples"]
        assert int(_encode_single(tok, _sample(name, batch=1, samples=min_samples)).lengths[0]) > 0
        if min_samples > 1:
            assert int(_encode_single(tok, _sample(name, batch=1, samples=min_samples - 1)).lengths[0]) == 0


TEXT_NAMES = zoo.list_tokenizers(modality="text")
# Entries tagged "slow" (a model step per byte, e.g. Equal-Info Windows) draw fewer strings; their own test files
# fuzz them further.
SLOW_TEXT = [n for n in TEXT_NAMES if "slow" in zoo.registry.get(n).tags]
FAST_TEXT = [n for n in TEXT_NAMES if n not in SLOW_TEXT]
unicode_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=60)


@pytest.mark.parametrize("name", FAST_TEXT)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=unicode_text)
def test_text_round_trip_on_generated_strings(name, text):
    _check_round_trip(name, text)


@pytest.mark.parametrize("name", SLOW_TEXT)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=unicode_text)
def test_slow_text_round_trip_on_generated_strings(name, text):
    _check_round_trip(name, text)


def _check_round_trip(name: str, text: str) -> None:
    tok = _TEXT_CACHE.get(name) or _TEXT_CACHE.setdefault(name, _build(name))
    if not tok.lossless:
        pytest.skip(f"{name} normalises text (lossless=False), so only its contract is checked")
    try:
        ids = tok.encode(text)
    except zoo.ZooError as err:
        # The documented policy: only lone surrogates may be refused (zoo/text/base.py).
        assert "surrogate" in str(err)
        assert any(0xD800 <= ord(c) <= 0xDFFF for c in text)
        return
    assert tok.decode(ids) == text


_TEXT_CACHE: dict = {}
