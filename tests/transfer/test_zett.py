"""ZeTT: the hypernetwork's shapes and identity property, save / load, a training run, the sampler and the CLI."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from safetensors import safe_open
from tokenizers import Tokenizer

from tests.transfer.test_transfer import _bpe
from zoo.analysis.vocab import load_vocabulary
from zoo.errors import ZooError
from zoo.generators import GPT
from zoo.transfer import transfer_embeddings
from zoo.transfer.zett import PAD, ZettHypernet, load_hypernet, predict_embeddings, surface_forms
from zoo.transfer.zett_sampling import BYTE_SYMBOLS, TokenizerSampler, train_unigram
from zoo.transfer.zett_train import ZettTraining, gpt_tables, lm_logits, stream_nll, train_hypernet

pytestmark = pytest.mark.usefixtures("one_thread")


def _words(seed: int, alphabet: str, count: int) -> list[str]:
    rng = random.Random(seed)
    lexicon = ["".join(rng.choice(alphabet) for _ in range(rng.randint(2, 7))) for _ in range(150)]
    weights = [1 / (r + 1) for r in range(len(lexicon))]
    return [" ".join(rng.choices(lexicon, weights, k=12)) + "\n" for _ in range(count)]


def _pretrain(gpt: GPT, tokenizer: Tokenizer, texts: list[str], steps: int = 150) -> None:
    """A few hundred tokens per step for ``steps`` steps: enough for embeddings with structure to transfer."""
    stream = torch.tensor(tokenizer.encode("".join(texts)).ids)
    generator = torch.Generator().manual_seed(0)
    optimiser = torch.optim.AdamW(gpt.parameters(), lr=1e-2)
    for step in range(steps):
        starts = torch.randint(0, len(stream) - 16, (16,), generator=generator).tolist()
        loss = gpt.training_losses({"ids": torch.stack([stream[s : s + 16] for s in starts])}, step)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    gpt.eval()


@pytest.fixture(scope="module")
def setup():
    """A base BPE, a tiny frozen GPT over it, a new BPE trained on other text, and an untrained hypernetwork."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module fixtures run before the one_thread fixture; two threads crawl on a shared CPU
    base_texts, new_texts = _words(1, "abcdefghij", 300), _words(2, "cdefghijkl", 300)
    base = _bpe(base_texts, 120)
    new = _bpe(new_texts, 150, specials=("<pad>", "<new>"))
    gpt = GPT(vocab_size=base.get_vocab_size(), context_length=16, dim=16, depth=1, heads=2, seed=0)
    _pretrain(gpt, base, base_texts)
    hypernet = ZettHypernet(base.get_vocab_size(), 16, hidden=16, depth=1, heads=2, max_pieces=4, seed=0)
    hypernet.fit_scale(gpt_tables(gpt)[0])
    yield {"base": base, "new": new, "gpt": gpt, "hypernet": hypernet, "texts": base_texts + new_texts}
    torch.set_num_threads(threads)


def _perturbed(hypernet: ZettHypernet, seed: int = 1) -> ZettHypernet:
    """A copy whose last layer is no longer zero, so predictions differ from FVT."""
    copy = ZettHypernet(**hypernet.config)
    copy.load_state_dict(hypernet.state_dict())
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        copy.output_projection[-1].weight.normal_(0, 0.2, generator=generator)
    return copy


def test_prediction_shape_for_a_new_vocabulary(setup):
    base_rows = gpt_tables(setup["gpt"])[0]
    result = predict_embeddings(_perturbed(setup["hypernet"]), base_rows, setup["base"], setup["new"])
    new_size = setup["new"].get_vocab_size()
    assert result.embeddings.shape == (new_size, 16)
    assert torch.isfinite(result.embeddings).all()
    # <pad> is shared and copied, <new> has no bytes and no base row: N(mean, std); the rest overlap or are predicted
    assert result.initialised["normal"] == 1
    assert result.copied + result.initialised["zett"] + 1 == new_size
    pad = setup["new"].token_to_id("<pad>")
    torch.testing.assert_close(result.embeddings[pad], base_rows[setup["base"].token_to_id("<pad>")])


def test_untrained_residual_hypernet_is_identity_on_base_tokens_and_fvt_elsewhere(setup):
    hypernet, gpt = setup["hypernet"], setup["gpt"]
    base_rows = gpt_tables(gpt)[0]
    base_vocab = load_vocabulary(setup["base"])
    forms, has_form = surface_forms(base_vocab, base_vocab, hypernet.max_pieces)
    single = has_form & (forms[:, 1] == PAD)
    assert single.sum() > 200  # BPE spells (almost) every own token as itself
    predicted = hypernet(forms[single], base_rows)
    torch.testing.assert_close(predicted, base_rows[forms[single, 0]], atol=1e-6, rtol=0)
    # every new token's row equals FVT's mean of its base pieces (all spellings fit max_pieces here)
    new_vocab = load_vocabulary(setup["new"])
    zett = predict_embeddings(hypernet, base_rows, base_vocab, new_vocab, copy_overlap=False).embeddings
    fvt = transfer_embeddings(base_rows, base_vocab, new_vocab, "fvt").embeddings
    new_forms, new_has = surface_forms(base_vocab, new_vocab, 64)
    fits = new_has & ((new_forms != PAD).sum(1) <= hypernet.max_pieces)
    assert fits.sum() > 300
    torch.testing.assert_close(zett[fits], fvt[fits], atol=1e-5, rtol=1e-5)


def test_non_residual_hypernet_learns_identity_in_its_warmup(setup):
    gpt = setup["gpt"]
    hypernet = ZettHypernet(gpt.vocab_size, 16, hidden=16, depth=1, heads=2, max_pieces=4, residual=False, seed=0)
    records = train_hypernet(
        hypernet, gpt, load_vocabulary(setup["base"]), setup["texts"], sampler=None,
        config=ZettTraining(steps=0, identity_steps=60, context=16, max_tokens=128, lr=3e-3, warmup=5, log_every=1000),
        log=lambda record: None,
    )
    losses = [r["identity"] for r in records]
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])


def test_save_and_load_give_identical_predictions(setup, tmp_path):
    hypernet = _perturbed(setup["hypernet"])
    base_rows = gpt_tables(setup["gpt"])[0]
    hypernet.save_pretrained(tmp_path / "zett")
    loaded = load_hypernet(tmp_path / "zett")
    assert loaded.config == hypernet.config
    before = predict_embeddings(hypernet, base_rows, setup["base"], setup["new"]).embeddings
    after = predict_embeddings(loaded, base_rows, setup["base"], setup["new"]).embeddings
    assert torch.equal(before, after)
    torch.testing.assert_close(loaded.embedding_std, hypernet.embedding_std)  # the fitted rescaler travels too
    with pytest.raises(ZooError, match="no config.json"):
        load_hypernet(tmp_path)


def test_wrong_base_is_refused(setup):
    hypernet = setup["hypernet"]
    with pytest.raises(ZooError, match=r"base embeddings must be \[\d+, 16\]"):
        hypernet(torch.zeros(2, 1, dtype=torch.long), torch.zeros(10, 16))
    with pytest.raises(ZooError, match="base vocabulary of"):
        predict_embeddings(hypernet, torch.zeros(300, 16), setup["new"], setup["new"])
    with pytest.raises(ZooError, match="at least one piece"):
        hypernet(torch.full((1, 2), PAD), gpt_tables(setup["gpt"])[0])


def test_sampler_draws_complete_byte_level_vocabularies_of_varying_size(setup):
    sampler = TokenizerSampler(setup["texts"], pool_size=2, pool_vocab=420, pool_share=0.5, min_vocab=300,
                               max_vocab=420, seed=0)
    rng = np.random.default_rng(0)
    drawn = [sampler.sample(rng) for _ in range(6)]
    sizes = [t.get_vocab_size() for t in drawn]
    assert all(300 <= s <= 420 for s in sizes) and len(set(sizes)) > 1
    text = "héllo 🌍 zzz\n\tQ"  # bytes the training words never had
    for tokenizer in drawn:
        assert BYTE_SYMBOLS <= set(tokenizer.get_vocab())
        assert tokenizer.decode(tokenizer.encode(text).ids) == text
    with pytest.raises(ZooError, match="min_vocab"):
        TokenizerSampler(setup["texts"], min_vocab=100, max_vocab=400, pool_vocab=400)


def test_lm_logits_with_the_base_rows_match_the_gpt(setup):
    gpt = setup["gpt"]
    ids = torch.randint(0, gpt.vocab_size, (3, 16), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(lm_logits(gpt, ids, gpt_tables(gpt)[0]), gpt(ids))
    nll, scored = stream_nll(gpt, ids.flatten(), gpt_tables(gpt)[0], 16)
    reference = torch.nn.functional.cross_entropy(gpt(ids).flatten(0, 1), ids.flatten(), reduction="sum")
    assert scored == 48 and nll == pytest.approx(float(reference), rel=1e-5)


def test_a_short_training_run_lowers_the_lm_loss_on_an_unseen_tokenizer(setup):
    gpt, base = setup["gpt"], setup["base"]
    texts = setup["texts"]
    hypernet = ZettHypernet(gpt.vocab_size, 16, hidden=32, depth=1, heads=2, max_pieces=4, seed=0)
    sampler = TokenizerSampler(texts[:400], pool_size=2, pool_vocab=420, pool_share=0.5, min_vocab=300,
                               max_vocab=420, seed=0)
    unseen = train_unigram(texts[400:], 380)
    stream = torch.tensor(unseen.encode("".join(texts[500:560])).ids)

    def heldout_loss() -> float:
        rows = predict_embeddings(hypernet, gpt_tables(gpt)[0], base, unseen).embeddings
        nll, scored = stream_nll(gpt, stream, rows, 16)
        return nll / scored

    before = heldout_loss()
    records = train_hypernet(hypernet, gpt, load_vocabulary(base), texts[:400], sampler,
                             ZettTraining(steps=40, batch=8, context=16, lr=3e-3, warmup=5, log_every=1000),
                             log=lambda record: None)
    after = heldout_loss()
    assert {r["phase"] for r in records} == {"lm"} and len(records) == 40
    assert after < before - 0.05, (before, after)
    assert all(r["lexical"] >= 0 for r in records)


def test_cli_writes_the_new_vocabulary_and_needs_a_hypernet(setup, tmp_path, capsys):
    from zoo.cli import main

    gpt = setup["gpt"]
    gpt.save_pretrained(tmp_path / "gpt")  # tied: the file holds head.weight only
    setup["base"].save(str(tmp_path / "base.json"))
    setup["new"].save(str(tmp_path / "new.json"))
    hypernet = _perturbed(setup["hypernet"])
    hypernet.save_pretrained(tmp_path / "zett")
    argv = ["transfer", str(tmp_path / "gpt" / "model.safetensors"), "--old", str(tmp_path / "base.json"),
            "--new", str(tmp_path / "new.json"), "-o", str(tmp_path / "out.safetensors"), "--method", "zett"]
    assert main(argv + ["--hypernet", str(tmp_path / "zett")]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["method"] == "zett" and list(summary["tables"]) == ["head.weight"]
    with safe_open(str(tmp_path / "out.safetensors"), framework="pt") as handle:
        head = handle.get_tensor("head.weight")
        assert handle.metadata()["zoo_transfer_method"] == "zett"
        torch.testing.assert_close(handle.get_tensor("norm.weight"), gpt.norm.weight.detach())
    assert head.shape == (setup["new"].get_vocab_size(), 16)
    expected = predict_embeddings(hypernet, gpt_tables(gpt)[0], setup["base"], setup["new"], seed=0).embeddings
    torch.testing.assert_close(head, expected)
    assert main(argv) == 2
    assert "--method zett needs --hypernet DIR" in capsys.readouterr().err


def test_shipped_hypernet_keeps_base_tokens_near_their_own_rows():
    """The shipped hypernetwork, trained with the lexical loss, predicts a bpe-32k token spelled by itself close to
    the GPT's own row (measured: cosine 0.95, relative distance 0.29 on these tokens; the rows' mean is 2.5 away)."""
    from safetensors.torch import load_file

    from zoo.resources import data_root

    hypernet = load_hypernet("weights/zett-adt-gpt-bpe32k")
    state = load_file(str(data_root() / "weights" / "adt-gpt-bpe32k" / "model.safetensors"))
    base = state["gpt.token_embedding.weight"].float()
    assert hypernet.base_vocab_size == base.shape[0] and hypernet.embedding_dim == base.shape[1]
    vocab = load_vocabulary("bpe-32k")
    forms, has_form = surface_forms(vocab, vocab, hypernet.max_pieces)
    ids = torch.nonzero(has_form & (forms[:, 1] == PAD)).flatten()[:2000]
    with torch.no_grad():
        predicted = hypernet(forms[ids], base)
    own = base[forms[ids, 0]]
    assert torch.nn.functional.cosine_similarity(predicted, own).mean() > 0.9
    relative = ((predicted - own).norm(dim=1) / own.norm(dim=1)).mean()
    spread = ((own - base.mean(0)).norm(dim=1) / own.norm(dim=1)).mean()
    assert relative < 0.5 < spread
