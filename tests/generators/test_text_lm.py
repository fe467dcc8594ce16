"""TextLM: scores equal a hand computation with the wrapped model (zoo GPT and a tiny random transformers GPT-2),
batched scoring equals one-by-one, and folders round trip (bfloat16 weights; config-only for transformers)."""

from __future__ import annotations

import json

import pytest
import torch

from zoo.errors import ZooError
from zoo.generators.text_lm import TextLM, main
from zoo.loading import resolve

pytestmark = pytest.mark.usefixtures("one_thread")

GPT = {"context_length": 48, "dim": 16, "depth": 1, "heads": 2}


def _zoo_lm(**options) -> TextLM:
    return TextLM(tokenizer="byte", gpt=GPT, **options)


def test_it_is_its_tokenizer_for_tokenizer_metrics():
    lm = _zoo_lm()
    text = "Grüße, 长江 🙂"
    assert lm.modality == "text" and lm.vocab_size == lm.tokenizer.vocab_size
    assert lm.decode(lm.encode(text)) == text
    assert b"".join(lm.token_bytes(lm.encode(text))) == text.encode()


def test_zoo_gpt_log_likelihood_is_the_sum_over_the_continuation_tokens():
    lm = _zoo_lm(seed=3)
    prompt, continuation = 'Which word: "ab"? "', 'a"'
    head, tail = lm.encode(prompt), lm.encode(continuation)
    ids = torch.tensor([head + tail])
    with torch.no_grad():
        logprobs = torch.log_softmax(lm.gpt(ids)[0].float(), -1)  # row t predicts ids[t]
    expected = sum(float(logprobs[len(head) + k, tail[k]]) for k in range(len(tail)))
    assert lm.log_likelihood(prompt, continuation) == pytest.approx(expected, abs=1e-5)
    # batched (right-padded) scores equal one-by-one scores
    choices = ['a"', 'ab"', 'bca"']
    assert lm.log_likelihoods(prompt, choices) == pytest.approx([lm.log_likelihood(prompt, c) for c in choices],
                                                                abs=1e-5)


def test_long_prompts_lose_tokens_from_the_left_and_a_too_long_continuation_is_refused():
    lm = _zoo_lm()
    long = "x" * 100
    assert lm.log_likelihood(long, "ab") == pytest.approx(lm.log_likelihood(long[-46:], "ab"), abs=1e-5)
    with pytest.raises(ZooError, match="cannot be scored"):
        lm.log_likelihood("a", "y" * 60)


def test_bfloat16_weights_round_trip_through_a_folder(tmp_path):
    lm = _zoo_lm(weights_dtype="bfloat16", seed=1)
    folder = lm.save_pretrained(tmp_path / "lm")
    record = json.loads((folder / "config.json").read_text())
    assert record["target"] == "zoo.generators.text_lm:TextLM" and record["config"]["weights_dtype"] == "bfloat16"
    from safetensors.torch import load_file

    stored = load_file(str(folder / "model.safetensors"))
    assert {t.dtype for t in stored.values()} == {torch.bfloat16} and "gpt.head.weight" not in stored
    loaded = resolve(str(folder)).tokenizer
    assert isinstance(loaded, TextLM) and loaded.gpt.head.weight is loaded.gpt.token_embedding.weight
    for name, tensor in lm.state_dict().items():  # float32 again, equal to the bfloat16-rounded originals
        assert torch.equal(loaded.state_dict()[name], tensor.to(torch.bfloat16).float())
    # a file of another dtype than the config records is refused
    record["config"]["weights_dtype"] = "float32"
    (folder / "config.json").write_text(json.dumps(record))
    with pytest.raises(ZooError, match="not float32"):
        resolve(str(folder))


def _tiny_gpt2(folder, vocab_size: int):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab_size, n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                       bos_token_id=0, eos_token_id=0))
    model.save_pretrained(folder)
    return model.eval()


def test_a_transformers_causal_lm_scores_as_computed_by_hand(tmp_path):
    model = _tiny_gpt2(tmp_path / "gpt2", 259)
    lm = TextLM(tokenizer="byte", hf_model=str(tmp_path / "gpt2"))
    assert lm.bos_id is None  # GPT-2 style: BOS = EOS, so no BOS is prepended
    prompt, continuation = "Answer: ", "yes"
    head, tail = lm.encode(prompt), lm.encode(continuation)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([head + tail])).logits[0], -1)  # row t predicts ids[t + 1]
    expected = sum(float(logprobs[len(head) + k - 1, tail[k]]) for k in range(len(tail)))
    assert lm.log_likelihood(prompt, continuation) == pytest.approx(expected, abs=1e-5)
    choices = ["yes", "no", "maybe"]
    assert lm.log_likelihoods(prompt, choices) == pytest.approx([lm.log_likelihood(prompt, c) for c in choices],
                                                                abs=1e-5)
    # bos=True puts the BOS id first
    with_bos = TextLM(tokenizer="byte", hf_model=str(tmp_path / "gpt2"), bos=True)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([[0] + head + tail])).logits[0], -1)
    expected = sum(float(logprobs[len(head) + k, tail[k]]) for k in range(len(tail)))
    assert with_bos.log_likelihood(prompt, continuation) == pytest.approx(expected, abs=1e-5)


def test_a_transformers_folder_brings_its_tokenizer_and_saves_as_config_only(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(["which word comes first", "stone agent", "house music"] * 20, trainer)
    folder = tmp_path / "gpt2"
    _tiny_gpt2(folder, tk.get_vocab_size())
    tk.save(str(folder / "tokenizer.json"))
    lm = TextLM(hf_model=str(folder))
    assert lm.encode("stone agent") == tk.encode("stone agent").ids
    out = tmp_path / "wrapped"
    main([str(folder), str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]
    again = resolve(str(out)).tokenizer
    assert again.log_likelihood("stone ", "agent") == pytest.approx(lm.log_likelihood("stone ", "agent"), abs=1e-6)


def test_bad_configs_say_what_is_expected(tmp_path):
    with pytest.raises(ZooError, match="exactly one of gpt"):
        TextLM(tokenizer="byte")
    with pytest.raises(ZooError, match="needs the tokenizer"):
        TextLM(gpt=GPT)
    with pytest.raises(ZooError, match="weights_dtype must be one of"):
        _zoo_lm(weights_dtype="int8")
    with pytest.raises(ZooError, match="gpt.vocab_size is set by the tokenizer"):
        TextLM(tokenizer="byte", gpt={**GPT, "vocab_size": 10})
    _tiny_gpt2(tmp_path / "small", 100)
    with pytest.raises(ZooError, match="more than the 100 rows"):
        TextLM(tokenizer="byte", hf_model=str(tmp_path / "small"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooError, match="has no tokenizer.json"):
        TextLM(hf_model=str(tmp_path / "empty"))


def test_the_shipped_adt_gpt_loads_verified_and_scores():
    from zoo.resources import resolve_resource

    folder = resolve_resource("weights/adt-gpt-bpe32k")
    lm = resolve(str(folder)).tokenizer  # config.json's sha256 of model.safetensors is checked on load
    assert isinstance(lm, TextLM) and lm.config["tokenizer"] == "bpe-32k" and lm.config["weights_dtype"] == "bfloat16"
    assert sum(p.numel() for p in lm.parameters()) < 2_500_000
    assert (folder / "model.safetensors").stat().st_size < 5_000_000
    prompt = 'Question: Which word comes first in "stone agent"?\nAnswer: "'
    scores = lm.log_likelihoods(prompt, ['stone"', 'agent"'])
    assert all(-60 < s < 0 for s in scores)
