"""SentinelLMs' model side: the glide's algebra, parity with the reference, and keyed models (zoo GPT, transformers)."""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch

from zoo.errors import ZooError
from zoo.generators.gpt import GPT
from zoo.text.byte import ByteTokenizer
from zoo.text.sentinel import SentinelTokenizer, derive_key
from zoo.transfer import sentinel_command
from zoo.transfer.sentinel import (
    encrypt_embeddings,
    encrypt_gpt,
    encrypt_transformers,
    geometry_report,
    glide,
    permute_rows,
    recovery_rate,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# Rows 0, 1, 26 and 39 of the reference's glide_rotation x3 + shuffle_embedding_matrix (llm_converter.py) applied to
# E[i, j] = sin(4 i + j + 1), 40 x 4, passkey "llm123" (seed 475), specials {0, 39}: computed once with that code.
REFERENCE_ROWS = {
    0: [0.7685913282, 0.8364177702, 0.0682403514, -0.829682152],
    1: [-0.1828332112, 0.0605595723, 0.9724838169, 1.7145205778],
    26: [-0.6682635054, 0.0112452711, 0.947647368, 1.2800190159],
    39: [-0.5224955092, 0.3528771302, 0.4965727654, -0.2235217079],
}
TEXT = "the quick brown fox jumps over the lazy dog. "


def _sines(rows: int, dim: int) -> torch.Tensor:
    return torch.tensor([[math.sin(dim * i + j + 1) for j in range(dim)] for i in range(rows)], dtype=torch.float64)


def test_paper_glide_and_row_shuffle_match_the_reference():
    key = derive_key("llm123", 40, {0, 39}, scheme="paper", glide_steps=3)
    out = permute_rows(glide(_sines(40, 4), key.glide), key.permutation)
    for row, values in REFERENCE_ROWS.items():
        torch.testing.assert_close(out[row], torch.tensor(values, dtype=torch.float64), atol=1e-9, rtol=0)


def test_glide_is_a_shift_along_ones_for_even_steps_and_keeps_centred_rows():
    weight = torch.randn(30, 8, dtype=torch.float64)
    two = glide(weight, [(0.3, 0.5), (0.9, 0.2)])
    # R 1 = -1, so step 2 undoes step 1's reflection and the shifts combine to (b2 - b1) 1
    torch.testing.assert_close(two, weight + (0.2 - 0.5))
    three = glide(weight, [(0.3, 0.5), (0.9, 0.2), (0.7, 0.1)])
    mean = weight.mean(1, keepdim=True)
    torch.testing.assert_close(three, weight - 2 * mean - (0.2 - 0.5) + 0.1)  # one reflection of the mean, + shift
    for out in (two, three):
        torch.testing.assert_close(out - out.mean(1, keepdim=True), weight - mean)
        torch.testing.assert_close(torch.cdist(out, out), torch.cdist(weight, weight))


def test_permute_rows_moves_row_i_to_its_encrypted_id():
    table = torch.arange(5.0)[:, None].repeat(1, 2)
    out = permute_rows(table, [2, 0, 1])
    assert out[:, 0].tolist() == [1.0, 2.0, 0.0, 3.0, 4.0]  # rows past the key's vocabulary stay
    with pytest.raises(ZooError, match="fewer than the key's vocabulary of 6 ids"):
        permute_rows(table, range(6))


@pytest.fixture(scope="module")
def trained():
    """A 1-layer GPT trained on a repeated sentence (bytes) until it predicts it; LayerNorms leave their init."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before one_thread; one thread is faster on 2 shared cores
    base = ByteTokenizer()
    model = GPT(base.vocab_size, context_length=48, dim=32, depth=1, heads=4, seed=0)
    stream = torch.tensor(base.encode(TEXT * 40))
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for step in range(80):
        starts = torch.randint(0, len(stream) - 48, (8,), generator=generator).tolist()
        loss = model.training_losses({"ids": torch.stack([stream[s : s + 48] for s in starts])}, step)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    torch.set_num_threads(threads)
    return model.eval(), base


def _accuracy(model, client: SentinelTokenizer, text: str) -> float:
    """Next-token accuracy as the client sees it: ids encrypted with its key, predictions decrypted with it."""
    ids = torch.tensor([client.encode(text)])
    predicted = model(ids).argmax(-1)[0, 1:].tolist()
    return sum(p == t for p, t in zip(client.decrypt(predicted), client.base.encode(text)[1:])) / (len(predicted))


@torch.no_grad()
def test_keyed_gpt_matches_the_original_and_a_wrong_key_is_at_chance(trained):
    model, base = trained
    right = SentinelTokenizer(base, key="server-and-client", glide_steps=3)
    keyed = encrypt_gpt(model, right)
    assert not keyed.config["tie_embeddings"] and keyed.head.weight is not keyed.token_embedding.weight
    text = TEXT[7:] + TEXT[:7]
    plain = model(torch.tensor([base.encode(text)]))
    encrypted = keyed(torch.tensor([right.encode(text)]))
    assert (encrypted[..., list(right.permutation)] - plain).abs().max() < 1e-4
    assert (plain.argmax(-1) == torch.tensor([base.encode(text)])).float().mean() > 0.9
    assert _accuracy(keyed, right, text) > 0.9
    wrong = SentinelTokenizer(base, key="someone-else", glide_steps=3)
    assert _accuracy(keyed, wrong, text) < 0.1  # chance is 1/256 per byte; the text uses 28 distinct ones


@torch.no_grad()
def test_a_tied_head_with_the_glide_changes_logits_once_layernorm_is_trained(trained):
    model, base = trained
    key = SentinelTokenizer(base, key="k", glide_steps=3)
    ids, enc = torch.tensor([base.encode(TEXT)]), torch.tensor([key.encode(TEXT)])
    tied = encrypt_gpt(model, key, untie=False)
    assert tied.head.weight is tied.token_embedding.weight
    assert (tied(enc)[..., list(key.permutation)] - model(ids)).abs().max() > 1e-2
    no_glide = encrypt_gpt(model, key, transform=False, untie=False)  # a pure permutation is exact even when tied
    assert (no_glide(enc)[..., list(key.permutation)] - model(ids)).abs().max() < 1e-5


@torch.no_grad()
def test_an_untied_gpt_gets_its_head_rows_permuted_only():
    model = _perturb_norms(GPT(259, context_length=48, dim=16, depth=1, heads=2, tie_embeddings=False, seed=3))
    key = SentinelTokenizer(ByteTokenizer(), key="k", scheme="paper", glide_steps=10)
    keyed = encrypt_gpt(model, key)
    torch.testing.assert_close(keyed.head.weight, permute_rows(model.head.weight, key.permutation))
    plain = model(torch.tensor([key.base.encode(TEXT)]))
    assert (keyed(torch.tensor([key.encode(TEXT)]))[..., list(key.permutation)] - plain).abs().max() < 1e-5


def test_geometry_and_recovery_by_an_attacker_with_the_plain_matrix(trained):
    model, base = trained
    key = SentinelTokenizer(base, key="k", glide_steps=3)
    encrypted = encrypt_embeddings(model.token_embedding.weight, key)
    report = geometry_report(model.token_embedding.weight, encrypted, key)
    assert report["max_row_change"] > 0.5  # every row moved by its reflected mean and the shift
    assert report["max_distance_change"] < 1e-5 and report["max_centred_change"] < 1e-5
    assert report["recovery_rate"] == recovery_rate(model.token_embedding.weight, encrypted, key) == 1.0


def _perturb_norms(model):
    """Stand-in for training: LayerNorm / RMSNorm gains and biases away from their constant init."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name.lower() or ".ln_" in name:
                param.add_(0.3 * torch.randn(param.shape, generator=generator))
    return model.eval()


def _tiny(kind: str):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    size = dict(vocab_size=259, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                max_position_embeddings=64)
    if kind == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=259, n_positions=64, n_embd=32,
                                                                     n_layer=2, n_head=4, bos_token_id=257,
                                                                     eos_token_id=258))
    if kind == "bert-mlm":
        return transformers.BertForMaskedLM(transformers.BertConfig(**size))
    if kind == "bert-classifier":
        return transformers.BertForSequenceClassification(transformers.BertConfig(**size, num_labels=3))
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**size, num_key_value_heads=4, pad_token_id=256,
                                                                  bos_token_id=257, eos_token_id=258))


@pytest.mark.parametrize("kind", ["gpt2", "bert-mlm", "bert-classifier"])
@torch.no_grad()
def test_transformers_layernorm_models_absorb_the_glide(kind):
    model = _perturb_norms(_tiny(kind))
    key = SentinelTokenizer(ByteTokenizer(), key="k", glide_steps=3)
    before = model.get_input_embeddings().weight.clone()
    keyed = encrypt_transformers(model, key)
    assert torch.equal(model.get_input_embeddings().weight, before)  # the model given is left as it was
    plain = model(input_ids=torch.tensor([key.base.encode(TEXT)])).logits
    encrypted = keyed(input_ids=torch.tensor([key.encode(TEXT)])).logits
    if kind != "bert-classifier":  # an LM's logits are over ids: put them back in plain order
        encrypted = encrypted[..., list(key.permutation)]
        head = keyed.get_output_embeddings()
        assert head.weight is not keyed.get_input_embeddings().weight
    assert (encrypted - plain).abs().max() < 1e-5


@torch.no_grad()
def test_rmsnorm_models_do_not_absorb_it_but_a_pure_permutation_is_exact():
    model = _perturb_norms(_tiny("llama"))
    key = SentinelTokenizer(ByteTokenizer(), key="k", glide_steps=3)
    plain = model(input_ids=torch.tensor([key.base.encode(TEXT)])).logits
    for transform, changed in ((True, True), (False, False)):
        keyed = encrypt_transformers(model, key, transform=transform)
        encrypted = keyed(input_ids=torch.tensor([key.encode(TEXT)])).logits[..., list(key.permutation)]
        assert bool((encrypted - plain).abs().max() > 1e-2) is changed


def test_a_keyed_transformers_model_stays_untied_after_saving(tmp_path):
    transformers = pytest.importorskip("transformers")
    key = SentinelTokenizer(ByteTokenizer(), key="k")
    keyed = encrypt_transformers(_tiny("gpt2").eval(), key)
    keyed.save_pretrained(tmp_path / "m")
    loaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "m")
    assert loaded.lm_head.weight is not loaded.transformer.wte.weight
    torch.testing.assert_close(loaded.lm_head.weight, keyed.lm_head.weight)
    torch.testing.assert_close(loaded.transformer.wte.weight, keyed.transformer.wte.weight)


def test_a_saved_keyed_gpt_loads_as_a_plain_gpt(tmp_path, trained):
    model, base = trained
    key = SentinelTokenizer(base, key="k")
    keyed = encrypt_gpt(model, key)
    keyed.save_pretrained(tmp_path / "gpt")
    loaded = GPT.from_pretrained(tmp_path / "gpt")
    ids = torch.tensor([key.encode(TEXT)])
    torch.testing.assert_close(loaded(ids), keyed(ids))


def test_errors_name_the_input(trained):
    model, base = trained
    with pytest.raises(ZooError, match="expected a SentinelTokenizer"):
        encrypt_gpt(model, base)
    with pytest.raises(ZooError, match="expected a zoo GPT"):
        encrypt_gpt(torch.nn.Linear(2, 2), SentinelTokenizer(base, key="k"))
    small = GPT(100, context_length=8, dim=8, depth=1, heads=2)
    with pytest.raises(ZooError, match="reads 100 ids, fewer than the tokenizer's 259"):
        encrypt_gpt(small, SentinelTokenizer(base, key="k"))
    with pytest.raises(ZooError, match="expected a transformers PreTrainedModel"):
        encrypt_transformers(torch.nn.Linear(2, 2), SentinelTokenizer(base, key="k"))


def test_the_command_keys_a_tokenizer_and_a_gpt_without_writing_the_key(tmp_path, trained, monkeypatch, capsys):
    model, base = trained
    model.save_pretrained(tmp_path / "gpt")
    (tmp_path / "key.txt").write_text("from a file\n")
    parser = argparse.ArgumentParser()
    sentinel_command.configure(parser)
    monkeypatch.delenv("ZOO_SENTINEL_KEY", raising=False)
    args = parser.parse_args(["byte", "-o", str(tmp_path / "tok"), "--model", str(tmp_path / "gpt"),
                              "--model-out", str(tmp_path / "enc"), "--key-file", str(tmp_path / "key.txt"),
                              "--glide-steps", "3"])
    assert sentinel_command.run(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["vocab_size"] == 259 and summary["model"] == str(tmp_path / "enc")
    assert all(b"from a file" not in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.suffix != ".txt")
    key = SentinelTokenizer.from_pretrained(tmp_path / "tok", key="from a file")
    keyed = GPT.from_pretrained(tmp_path / "enc")
    with torch.no_grad():
        encrypted = keyed(torch.tensor([key.encode(TEXT)]))[..., list(key.permutation)]
        assert (encrypted - model(torch.tensor([base.encode(TEXT)]))).abs().max() < 1e-4
    with pytest.raises(ZooError, match="needs its passkey"):
        sentinel_command.run(parser.parse_args(["byte", "-o", str(tmp_path / "tok2")]))
    with pytest.raises(ZooError, match="--model and --model-out go together"):
        sentinel_command.run(parser.parse_args(["byte", "-o", str(tmp_path / "t"), "--model", str(tmp_path / "gpt")]))
