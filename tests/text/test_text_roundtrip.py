"""decode(encode(s)) == s on 10,000 generated strings for every lossless text entry of the registry (300 for slow ones).

Strings come from all of Unicode, lone surrogates included (zoo.text.base's policy keeps them in
byte-level tokenizers); each example is a batch of 100 strings, so 100 examples give 10,000.
Entries with shipped weights are tested pretrained (their real vocabulary), others as built.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zoo
from zoo.hub import remote_cache_path

# The neural text entries (pooling-*) run tiny transformers: one thread, as the other small-model tests do.
pytestmark = pytest.mark.usefixtures("one_thread")

TEXT_NAMES = zoo.list_tokenizers(modality="text")
# Entries tagged "slow" (a model step per byte: Equal-Info Windows) get 3 batches here, 300 strings; their own test
# file fuzzes them further (tests/generators/test_equal_info.py).
SLOW = [n for n in TEXT_NAMES if "slow" in zoo.registry.get(n).tags]
FAST = [n for n in TEXT_NAMES if n not in SLOW]
_CACHE: dict = {}

strings = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40)
mixed = st.one_of(
    strings,
    st.text(alphabet=" \t\n\r0123456789.,'-aeé日本ру\u00a0\u3000\U0001f30d\ud800\udfff", max_size=40),
)


def _tokenizer(name: str):
    if name not in _CACHE:
        entry = zoo.registry.get(name)
        local = remote_cache_path(entry.weights)
        if local is not None and not local.is_file():  # tests never download
            pytest.skip(f"{name}: its weights {entry.weights['path']} are not cached at {local}")
        _CACHE[name] = zoo.load(name, pretrained=entry.pretrained)
    return _CACHE[name]


@pytest.mark.parametrize("name", FAST)
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(mixed, min_size=100, max_size=100))
def test_lossless_entries_round_trip_10k_strings(name, batch):
    _check_batch(name, batch)


@pytest.mark.parametrize("name", SLOW)
@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(mixed, min_size=100, max_size=100))
def test_slow_lossless_entries_round_trip_300_strings(name, batch):
    _check_batch(name, batch)


def _check_batch(name: str, batch: list[str]) -> None:
    tok = _tokenizer(name)
    if not getattr(tok, "lossless", True):
        pytest.skip(f"{name} declares itself lossy")
    encoded = tok.encode(batch)
    assert all(0 <= i < tok.vocab_size for row in encoded for i in row)
    assert tok.decode(encoded) == batch
    assert [tok.encode(s) for s in batch[:5]] == encoded[:5]  # the batch path equals one-at-a-time
