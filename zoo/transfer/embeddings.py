"""Embedding transfer: initialise a model's token embeddings for a new vocabulary.

Tokens whose bytes exist in the old vocabulary keep their trained rows (special tokens match by text).
The other rows come from one of:

- ``fvt``: the mean of the old rows of the token's old-tokenizer pieces (Fast Vocabulary Transfer,
  Gee et al. 2022, https://aclanthology.org/2022.emnlp-industry.41).
- ``normal``: N(mean, std) per dimension of the old rows (the fallback of WECHSEL and FOCUS).
- ``multivariate``: N(mu, Sigma) with the old rows' mean and full covariance (Hewitt 2021,
  https://nlp.stanford.edu/~johnhew/vocab-expansion.html).
- ``focus``: a sparsemax-weighted mix of overlapping tokens' old rows, weighted by the cosine similarity
  of token-level fastText vectors trained on target-language text (Dobler & de Melo 2023,
  https://arxiv.org/abs/2305.14481); tokens without a fastText vector fall back to ``normal``.
- ``wechsel``: a softmax(cos / 0.1)-weighted mix of the rows of the 10 nearest old tokens in fastText word-vector
  spaces of the two languages, aligned by Procrustes over a bilingual dictionary (Minixhofer et al. 2022,
  https://arxiv.org/abs/2112.06598; ``zoo.transfer.wechsel``); tokens without a vector fall back to ``normal``.
  The paper recomputes the overlapping tokens' rows too: ``wechsel_copy_overlap=False`` does that (specials stay).

``transfer_embeddings`` works on a matrix; ``transfer_file`` rewrites every per-token table of a
safetensors file (input embeddings, output head, bias) and writes the result atomically.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from zoo.analysis.vocab import Vocabulary, load_vocabulary
from zoo.errors import ZooError
from zoo.pretrained import atomic_write_bytes

METHODS = ("fvt", "normal", "multivariate", "focus", "wechsel")


@dataclass
class TransferResult:
    embeddings: torch.Tensor  # [V_new, D]
    copied: int  # rows copied from overlapping tokens
    initialised: dict[str, int] = field(default_factory=dict)  # how the other rows were made -> count


def sparsemax(scores: torch.Tensor) -> torch.Tensor:
    """Euclidean projection of each row onto the simplex (Martins & Astudillo 2016, https://arxiv.org/abs/1602.02068).

    scores [N, K] -> weights [N, K], rows summing to 1, most entries exactly 0.
    """
    ordered = scores.sort(dim=-1, descending=True).values
    cumulative = ordered.cumsum(-1)
    k = torch.arange(1, scores.shape[-1] + 1, device=scores.device, dtype=scores.dtype)
    support = (1 + k * ordered > cumulative).sum(-1, keepdim=True)  # [N, 1] size of the support
    threshold = (cumulative.gather(-1, support - 1) - 1) / support.to(scores.dtype)
    return (scores - threshold).clamp_min(0)


def _normal_rows(old: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    mean, std = old.mean(0), old.std(0)
    return mean + std * torch.randn(count, old.shape[1], generator=generator, dtype=old.dtype)


def _multivariate_rows(old: torch.Tensor, count: int, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """Samples of N(mu, scale * Sigma) of the old rows; a small ridge keeps Sigma positive definite when V <= D.

    Hewitt's vocabulary-expansion note samples with ``scale`` 1e-5 (rows close to the mean); 1 is the full spread."""
    data = old.double()
    mean = data.mean(0)
    centred = data - mean
    cov = scale * centred.T @ centred / max(len(data) - 1, 1)
    ridge = 1e-6 * cov.diagonal().mean().clamp_min(1e-12)
    chol = torch.linalg.cholesky(cov + ridge * torch.eye(cov.shape[0], dtype=cov.dtype))
    noise = torch.randn(count, old.shape[1], generator=generator, dtype=torch.float64)
    return (mean + noise @ chol.T).to(old.dtype)


def _overlap(old: Vocabulary, new: Vocabulary) -> dict[int, int]:
    """new id -> old id for tokens with the same bytes (specials: the same text)."""
    old_index = old.index()
    pairs = {}
    for i, data in enumerate(new.token_bytes):
        if data is not None and data in old_index:
            pairs[i] = old_index[data]
    for text, i in new.specials.items():
        if text in old.specials:
            pairs[i] = old.specials[text]
    return pairs


def train_fasttext(vocab: Vocabulary, texts: list[str], dim: int, epochs: int, min_count: int):
    """Token-level fastText (CBOW) on ``texts`` tokenized by ``vocab`` -> {token id: vector}, as FOCUS trains it."""
    try:
        import fasttext
    except ImportError:
        raise ZooError(
            "FOCUS needs a fastText implementation: `pip install fasttext-wheel` (or `fasttext`) from PyPI; "
            "no fastText module is importable here"
        ) from None
    lines = []
    for text in texts:
        for line in text.splitlines():
            symbols = [vocab.symbol(i) for i in vocab.encode(line)] if line.strip() else []
            if symbols:
                lines.append(" ".join(s for s in symbols if s))
    if not lines:
        raise ZooError("FOCUS: the target text is empty; pass text in the new tokenizer's language")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "tokens.txt"
        corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
        # One thread keeps the vectors reproducible (fastText seeds its own generator; not every build takes `seed`).
        model = fasttext.train_unsupervised(
            str(corpus), model="cbow", dim=dim, epoch=epochs, minCount=min_count, neg=10, thread=1, verbose=0
        )
    known = set(model.words)
    vectors = {}
    for i in range(vocab.size):
        symbol = vocab.symbol(i)
        if symbol is not None and symbol in known:
            vectors[i] = torch.from_numpy(model.get_word_vector(symbol).copy())
    return vectors


def _word_vectors(given, texts: list[str] | None, side: str):
    """A fastText model for WECHSEL: the one given (object or ``.bin`` path), else one trained on ``texts``."""
    from zoo.transfer.wechsel import load_word_vectors, train_word_vectors

    if given is not None:
        return load_word_vectors(given) if isinstance(given, (str, Path)) else given
    if not texts:
        raise ZooError(
            f"WECHSEL needs {side}-language word vectors: a fastText .bin (--{side}-fasttext) or {side}-language "
            f"text to train them on (--{side}-text)"
        )
    return train_word_vectors(texts)


def transfer_embeddings(
    embeddings: torch.Tensor,
    old_tokenizer,
    new_tokenizer,
    method: str = "fvt",
    target_texts: list[str] | None = None,
    seed: int = 0,
    fasttext_dim: int = 100,
    fasttext_epochs: int = 3,
    fasttext_min_count: int = 10,
    source_texts: list[str] | None = None,
    dictionary: str | list | None = "identical",
    source_word_vectors=None,
    target_word_vectors=None,
    wechsel_k: int = 10,
    wechsel_temperature: float = 0.1,
    wechsel_copy_overlap: bool = True,
) -> TransferResult:
    """New embeddings [V_new, D] for ``new_tokenizer`` from ``embeddings`` [V_old, D] of ``old_tokenizer``.

    Tokenizers: an HF ``tokenizers.Tokenizer``, a ``tokenizer.json`` or a folder holding one, a zoo text
    tokenizer, a checkpoint folder or a registry name. ``target_texts`` (new-language text) is needed by ``focus``.
    ``wechsel`` needs word vectors of both languages: fastText models (objects or ``.bin`` paths) in
    ``source_word_vectors`` / ``target_word_vectors``, else ones trained on ``source_texts`` / ``target_texts``;
    and a bilingual ``dictionary`` (a spec of ``zoo.transfer.wechsel.load_dictionary`` or a list of pairs).
    """
    if method not in METHODS:
        raise ZooError(f"unknown transfer method {method!r}; expected one of {', '.join(METHODS)}")
    old = old_tokenizer if isinstance(old_tokenizer, Vocabulary) else load_vocabulary(old_tokenizer)
    new = new_tokenizer if isinstance(new_tokenizer, Vocabulary) else load_vocabulary(new_tokenizer)
    embeddings = torch.as_tensor(embeddings)
    if embeddings.ndim != 2 or embeddings.shape[0] != old.size:
        raise ZooError(
            f"embeddings: expected [V_old={old.size}, D] rows for the old tokenizer {old.name}, "
            f"got {list(embeddings.shape)}"
        )
    if not embeddings.is_floating_point():
        raise ZooError(f"embeddings: expected a float tensor, got {embeddings.dtype}")
    old_rows = embeddings.detach().float()
    generator = torch.Generator().manual_seed(seed)
    out = torch.empty(new.size, old_rows.shape[1])
    overlap = _overlap(old, new)
    if method == "wechsel" and not wechsel_copy_overlap:  # the paper's setting: only special tokens are copied
        overlap = {i: j for i, j in overlap.items() if new.token_bytes[i] is None}
    for new_id, old_id in overlap.items():
        out[new_id] = old_rows[old_id]
    todo = [i for i in range(new.size) if i not in overlap]
    counts: dict[str, int] = {}

    def fill_random(ids: list[int], how: str) -> None:
        if ids:
            sampler = _multivariate_rows if how == "multivariate" else _normal_rows
            out[ids] = sampler(old_rows, len(ids), generator)
            counts[how] = counts.get(how, 0) + len(ids)

    if method in ("normal", "multivariate"):
        fill_random(todo, method)
    elif method == "fvt":
        fallback = []
        for i in todo:
            data = new.token_bytes[i]
            pieces = old.split(data) if data is not None else []
            if pieces:
                out[i] = old_rows[pieces].mean(0)  # https://aclanthology.org/2022.emnlp-industry.41 §3
                counts["fvt"] = counts.get("fvt", 0) + 1
            else:
                fallback.append(i)
        fill_random(fallback, "normal")
    elif method == "wechsel":
        from zoo.transfer.wechsel import wechsel_targets

        source_model = _word_vectors(source_word_vectors, source_texts, "source")
        target_model = _word_vectors(target_word_vectors, target_texts, "target")
        rows, _ = wechsel_targets(
            old,
            new,
            old_rows,
            source_model,
            target_model,
            dictionary or "identical",
            todo,
            k=wechsel_k,
            temperature=wechsel_temperature,
        )
        for i, row in rows.items():
            out[i] = row
        if rows:
            counts["wechsel"] = len(rows)
        fill_random([i for i in todo if i not in rows], "normal")
    else:
        if not target_texts:
            raise ZooError("FOCUS needs target-language text (target_texts / --target-text) to train fastText")
        vectors = train_fasttext(new, target_texts, fasttext_dim, fasttext_epochs, fasttext_min_count)
        anchors = [i for i in overlap if i in vectors]
        with_vectors = [i for i in todo if i in vectors]
        if anchors and with_vectors:
            # https://arxiv.org/abs/2305.14481 §2: weights = sparsemax(cosine to overlapping tokens' fastText vectors)
            anchor_vectors = torch.nn.functional.normalize(torch.stack([vectors[i] for i in anchors]), dim=-1)
            new_vectors = torch.nn.functional.normalize(torch.stack([vectors[i] for i in with_vectors]), dim=-1)
            weights = sparsemax(new_vectors @ anchor_vectors.T)  # [new, anchors]
            out[with_vectors] = weights @ old_rows[[overlap[i] for i in anchors]]
            counts["focus"] = len(with_vectors)
        else:
            with_vectors = []
        fill_random(sorted(set(todo) - set(with_vectors)), "normal")
    return TransferResult(out.to(embeddings.dtype), copied=len(overlap), initialised=counts)


def read_tensors(path) -> tuple[dict, dict]:
    """Every tensor of a safetensors file and its metadata (one error naming the file when it cannot be read)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return {k: handle.get_tensor(k) for k in handle.keys()}, handle.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise ZooError(f"{path}: cannot read safetensors ({err})") from None


def transfer_file(
    embeddings_path: str | Path,
    old_tokenizer,
    new_tokenizer,
    output_path: str | Path,
    method: str = "fvt",
    keys: list[str] | None = None,
    target_texts: list[str] | None = None,
    seed: int = 0,
    **options,
) -> dict[str, TransferResult]:
    """Rewrite the per-token tables of a safetensors file for the new vocabulary; other tensors are kept.

    ``keys`` names the tables; by default every tensor whose first dimension is the old vocabulary size
    (input embeddings, an untied output head, its bias). The output is written atomically.
    """
    from safetensors.torch import save

    old = load_vocabulary(old_tokenizer)
    new = load_vocabulary(new_tokenizer)
    if method == "wechsel":  # one pair of word-vector models serves every table
        options["source_word_vectors"] = _word_vectors(
            options.get("source_word_vectors"), options.pop("source_texts", None), "source"
        )
        options["target_word_vectors"] = _word_vectors(options.get("target_word_vectors"), target_texts, "target")
    tensors, metadata = read_tensors(embeddings_path)
    if keys is None:
        keys = [k for k, t in tensors.items() if t.ndim >= 1 and t.shape[0] == old.size and t.is_floating_point()]
        if not keys:
            shapes = {k: list(t.shape) for k, t in tensors.items()}
            raise ZooError(
                f"{embeddings_path}: no tensor has the old vocabulary size {old.size} as first dimension "
                f"(tensors: {shapes}); pass the embedding's key"
            )
    results = {}
    for key in keys:
        if key not in tensors:
            raise ZooError(f"{embeddings_path}: no tensor named {key!r} (has {sorted(tensors)})")
        table = tensors[key]
        flat = table.reshape(table.shape[0], -1)  # a bias [V] becomes [V, 1]
        result = transfer_embeddings(flat, old, new, method, target_texts=target_texts, seed=seed, **options)
        tensors[key] = result.embeddings.reshape(new.size, *table.shape[1:]).contiguous()
        results[key] = result
    metadata = {**metadata, "zoo_transfer_method": method, "zoo_transfer_keys": ",".join(keys)}
    atomic_write_bytes(output_path, save(tensors, metadata=metadata))
    return results
