"""Vocabulary expansion: rows for the ids a merged tokenizer appends, every old row kept as it was.

``zoo.text.expand.expand_bpe`` merges a new-language BPE into a base BPE so that ids 0..V-1 keep their
meaning and ids V..V+N-1 are new. ``expand_model`` grows a model's per-token tables (input embeddings, output
head, its bias) to V+N rows; the added rows come from one of (compared by Mundra et al. 2024,
https://arxiv.org/abs/2407.05841):

- ``mean``: the mean of the old rows.
- ``multivariate``: samples of N(mu, 1e-5 Sigma) of the old rows (Hewitt 2021,
  https://nlp.stanford.edu/~johnhew/vocab-expansion.html; the scale keeps new logits near the average one).
- ``fvt``: the mean of the old rows of the pieces the base tokenizer cuts the new token into (Gee et al. 2022,
  https://aclanthology.org/2022.emnlp-industry.41).
- ``cw2v``: convex mixes softmax(A)·E trained by skip-gram on new-language text (``zoo.transfer.cw2v``).
- ``groups``: K-Tokeniser-style (Hasan et al. 2024, https://arxiv.org/abs/2406.14312): the user gives groups of
  related terms (e.g. domain terms by semantic type); a group's row is the mean of the old rows of its terms'
  base-tokenizer pieces, and an added token that occurs in a group's terms gets the mean of its groups' rows.
  Added tokens in no group fall back to ``fvt``.

Old rows are copied bit for bit, so on text that the expanded tokenizer still cuts as before the model sees
the same inputs; its softmax now also spreads over the added ids, which is what the initialisations differ in.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from zoo.analysis.vocab import Vocabulary, load_vocabulary
from zoo.errors import ZooError
from zoo.transfer.embeddings import _multivariate_rows

INITS = ("mean", "multivariate", "fvt", "cw2v", "groups")


# -- inputs -------------------------------------------------------------------------------------------------


def read_groups(path: str | Path) -> dict[str, list[str]]:
    """Groups of related terms: a JSON or YAML mapping {group: [terms]}, or lines ``group<TAB>term``."""
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"groups file {path}: no such file (expected JSON/YAML {{group: [terms]}} or group<TAB>term)")
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix in (".json", ".yaml", ".yml"):
        import yaml

        try:
            data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise ZooError(f"groups file {path}: cannot be parsed ({str(err).splitlines()[0]})") from None
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise ZooError(f"groups file {path}: expected a mapping from group name to a list of terms")
        groups = {str(k): [str(t) for t in v if str(t).strip()] for k, v in data.items()}
    else:
        groups = {}
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            group, tab, term = line.partition("\t")
            if not tab or not group.strip() or not term.strip():
                raise ZooError(f"groups file {path}, line {number}: expected 'group<TAB>term', got {line!r}")
            groups.setdefault(group.strip(), []).append(term.strip())
    groups = {k: v for k, v in groups.items() if v}
    if not groups:
        raise ZooError(f"groups file {path}: no terms")
    return groups


def added_ids(base: Vocabulary, merged: Vocabulary) -> list[int]:
    """Ids V..V'-1 of ``merged``, after checking that its first V ids are ``base``'s (same bytes, same specials)."""
    if merged.size < base.size:
        raise ZooError(f"expanded tokenizer {merged.name} has {merged.size} ids, fewer than the base's {base.size}")
    base_specials = {i: s for s, i in base.specials.items()}
    merged_specials = {i: s for s, i in merged.specials.items()}
    for i in range(base.size):
        if base.token_bytes[i] != merged.token_bytes[i] or base_specials.get(i) != merged_specials.get(i):
            raise ZooError(
                f"expanded tokenizer {merged.name}: id {i} is {merged.token_bytes[i] or merged_specials.get(i)!r}, "
                f"but {base.token_bytes[i] or base_specials.get(i)!r} in the base; expected the base's ids "
                "0..V-1 unchanged (pass new-language text to build such a tokenizer)"
            )
    return list(range(base.size, merged.size))


def expand_tokenizer(base_tokenizer, texts_or_tokenizer, new_tokens: int, seed: int = 0):
    """The base BPE with up to ``new_tokens`` tokens appended, learnt on new-language texts or taken from a
    new-language BPE (``zoo.text.expand.expand_bpe``) -> (merged tokenizer, added ids)."""
    try:
        from zoo.text.expand import expand_bpe
    except ImportError:
        raise ZooError("expanding a tokenizer needs zoo.text.expand (expand_bpe), which this install lacks") from None
    expanded = expand_bpe(base_tokenizer, texts_or_tokenizer, new_tokens, seed=seed)
    return expanded.tokenizer, list(expanded.added_ids)


def fertility(tokenizer, texts: list[str]) -> float:
    """Tokens per whitespace word over ``texts`` (``zoo.metrics.text``'s rule; lower is better)."""
    from zoo.metrics.text import word_split_counts

    words = tokens = 0
    for text in texts:
        w, t, _ = word_split_counts(tokenizer, text, tokenizer.encode(text))
        words, tokens = words + w, tokens + t
    return tokens / words if words else float("nan")


def _sequences(merged: Vocabulary, texts: list[str]) -> list[list[int]]:
    return [merged.encode(line) for text in texts for line in text.splitlines() if line.strip()]


# -- rows -----------------------------------------------------------------------------------------------------


def _fvt_rows(old: torch.Tensor, base: Vocabulary, merged: Vocabulary, ids: list[int]) -> torch.Tensor:
    mean = old.mean(0)
    rows = []
    for i in ids:
        data = merged.token_bytes[i]
        pieces = base.split(data) if data else []
        rows.append(old[pieces].mean(0) if pieces else mean)
    return torch.stack(rows) if rows else old.new_zeros(0, old.shape[1])


def group_members(base: Vocabulary, merged: Vocabulary, groups: dict[str, list[str]], ids: list[int]):
    """(group -> old ids of its terms' base pieces, added id -> the groups whose terms it occurs in)."""
    wanted = set(ids)
    pieces: dict[str, list[int]] = {}
    membership: dict[int, list[str]] = {}
    for name, terms in groups.items():
        pieces[name] = [p for term in terms for p in base.encode(term)]
        for term in terms:
            for i in set(merged.encode(term)) & wanted:
                if name not in membership.setdefault(i, []):
                    membership[i].append(name)
    return pieces, membership


def added_rows(
    init: str,
    old: torch.Tensor,
    base: Vocabulary,
    merged: Vocabulary,
    ids: list[int],
    generator: torch.Generator,
    groups: dict[str, list[str]] | None = None,
    cov_scale: float = 1e-5,
) -> tuple[torch.Tensor, dict[str, int]]:
    """Rows [N, D] for the added ``ids`` from ``old`` [V, D] by ``init`` (all but ``cw2v``) and how each was made."""
    old = old.float()
    if init == "mean":
        return old.mean(0).expand(len(ids), -1).clone(), {"mean": len(ids)}
    if init == "multivariate":
        return _multivariate_rows(old, len(ids), generator, scale=cov_scale), {"multivariate": len(ids)}
    if init == "fvt":
        return _fvt_rows(old, base, merged, ids), {"fvt": len(ids)}
    if init == "groups":
        if not groups:
            raise ZooError("expansion init 'groups' needs groups of related terms (--groups FILE)")
        pieces, membership = group_members(base, merged, groups, ids)
        group_rows = {name: old[p].mean(0) for name, p in pieces.items() if p}
        rows = _fvt_rows(old, base, merged, ids)
        grouped = 0
        for k, i in enumerate(ids):
            mine = [group_rows[g] for g in membership.get(i, []) if g in group_rows]
            if mine:
                rows[k] = torch.stack(mine).mean(0)
                grouped += 1
        counts = {"groups": grouped, "fvt": len(ids) - grouped}
        return rows, {k: v for k, v in counts.items() if v}
    raise ZooError(f"unknown expansion init {init!r}; expected one of {', '.join(INITS)}")


# -- models ---------------------------------------------------------------------------------------------------


def vocabulary_tables(model: nn.Module, vocab_size: int) -> dict[str, str]:
    """Parameter name -> ``input`` / ``output`` for the per-token tables (a tied table is listed once, as input)."""
    tables: dict[str, str] = {}
    seen: dict[int, str] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, nn.Embedding) and module.num_embeddings == vocab_size:
            kinds = {"weight": "input"}
        elif isinstance(module, nn.Linear) and module.out_features == vocab_size:
            kinds = {"weight": "output", "bias": "output"}
        else:
            continue
        for param_name, kind in kinds.items():
            tensor = getattr(module, param_name, None)
            if tensor is None:
                continue
            name = f"{module_name}.{param_name}" if module_name else param_name
            if tensor.data_ptr() in seen:  # tied: the first name stands for both
                continue
            seen[tensor.data_ptr()] = name
            tables[name] = kind
    return tables


def expand_tables(
    state: dict[str, torch.Tensor],
    tables: dict[str, str],
    base: Vocabulary,
    merged: Vocabulary,
    init: str = "fvt",
    texts: list[str] | None = None,
    groups: dict[str, list[str]] | None = None,
    seed: int = 0,
    **cw2v_options,
) -> tuple[dict[str, torch.Tensor], dict]:
    """New [V+N, ...] tensors for the ``tables`` of ``state`` (old rows copied) and a summary of how rows were made."""
    if init not in INITS:
        raise ZooError(f"unknown expansion init {init!r}; expected one of {', '.join(INITS)}")
    ids = added_ids(base, merged)
    generator = torch.Generator().manual_seed(seed)
    added: dict[str, torch.Tensor] = {}
    summary: dict = {"init": init, "added": len(ids), "tables": {}}
    if init == "cw2v":
        from zoo.transfer.cw2v import cw2v_rows

        if not texts:
            raise ZooError("expansion init 'cw2v' needs new-language text to train on (--text FILE)")
        weights = [n for n in tables if state[n].ndim == 2]
        inputs = [n for n in weights if tables[n] == "input"] or weights[:1]
        outputs = [n for n in weights if tables[n] == "output" and n not in inputs]
        result = cw2v_rows(
            state[inputs[0]], _sequences(merged, texts), len(ids),
            output_table=state[outputs[0]] if outputs else None, seed=seed, **cw2v_options,
        )  # fmt: skip
        added[inputs[0]] = result.input_rows
        if outputs:
            added[outputs[0]] = result.output_rows
        mix = result.mixes.get("output", result.mixes["input"])
        for name in tables:
            if name not in added:  # a bias, or a further table: the same convex mix of its old values
                added[name] = mix @ state[name].reshape(base.size, -1).float()
        summary["cw2v_losses"] = [round(x, 4) for x in result.losses]
        counts = {name: {"cw2v": len(ids)} for name in tables}
    else:
        counts = {}
        for name in tables:
            rows, counts[name] = added_rows(
                init, state[name].reshape(base.size, -1), base, merged, ids, generator, groups
            )
            added[name] = rows
    out = {}
    for name in tables:
        old = state[name]
        rows = added[name].to(old.dtype).reshape(len(ids), *old.shape[1:])
        out[name] = torch.cat([old, rows]).contiguous()
        summary["tables"][name] = {"rows": int(out[name].shape[0]), "initialised": counts[name]}
    return out, summary


def expand_model(
    model,
    base_tokenizer,
    merged_tokenizer,
    init: str = "fvt",
    texts: list[str] | None = None,
    groups: dict[str, list[str]] | str | Path | None = None,
    seed: int = 0,
    **cw2v_options,
):
    """A copy of ``model`` (a zoo model object or ``save_pretrained`` folder with a ``vocab_size`` config) for the
    merged tokenizer's V+N ids -> (expanded model, summary). The model's vocabulary must be the base's."""
    from zoo.pretrained import build_checked, from_folder

    if isinstance(model, (str, Path)):
        model = from_folder(model)
    base = base_tokenizer if isinstance(base_tokenizer, Vocabulary) else load_vocabulary(base_tokenizer)
    merged = merged_tokenizer if isinstance(merged_tokenizer, Vocabulary) else load_vocabulary(merged_tokenizer)
    config = getattr(model, "config", None)
    if not isinstance(config, dict) or config.get("vocab_size") != base.size:
        found = config.get("vocab_size") if isinstance(config, dict) else None
        raise ZooError(
            f"{type(model).__name__}: expected a model whose config has vocab_size = {base.size} (the base "
            f"tokenizer's), got {found}"
        )
    if isinstance(groups, (str, Path)):
        groups = read_groups(groups)
    tables = vocabulary_tables(model, base.size)
    if not tables:
        raise ZooError(f"{type(model).__name__}: no embedding or output layer has {base.size} rows")
    state = {k: v.detach() for k, v in model.state_dict().items()}
    new_tables, summary = expand_tables(state, tables, base, merged, init, texts, groups, seed, **cw2v_options)
    expanded = build_checked(type(model), {**config, "vocab_size": merged.size}, type(model).__name__)
    new_state = expanded.state_dict()
    for name, tensor in state.items():
        new_state[name] = tensor
    for name, tensor in new_tables.items():
        new_state[name] = tensor
    # tied tables: every name sharing the expanded table's storage gets the same tensor
    for name, tensor in expanded.state_dict().items():
        if name not in new_tables and tensor.shape[:1] == (merged.size,) and state[name].shape[:1] == (base.size,):
            twin = next((n for n in new_tables if state[n].data_ptr() == state[name].data_ptr()), None)
            if twin is None:
                raise ZooError(f"{type(model).__name__}: {name} has {base.size} rows but is no token table")
            new_state[name] = new_tables[twin]
    expanded.load_state_dict(new_state, strict=True)
    return expanded, summary
