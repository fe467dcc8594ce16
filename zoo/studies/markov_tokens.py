"""Tokenization on k-th order Markov sources: unigram-over-tokens rates and a small GPT with and without tokens.

    python -m zoo.studies.markov_tokens --out eval/results/markov-tokens

Rajaraman, Jiao and Ramchandran, "Toward a Theory of Tokenization in LLMs" (https://arxiv.org/abs/2404.08335).
Two parts, one report:

- tokenizers: for every source (``zoo.data.markov``) and dictionary size, train BPE, Unigram, LiB and LZW
  on the source's train split (plus the byte baseline), save each as a zoo folder and run the suite
  ``eval/text-markov.yaml`` on the source's test split through the harness (``zoo.evaluate``). The suite's
  ``unigram-cross-entropy`` fits a token unigram on the train split and codes the test split with it.
- transformer: the zoo GPT (``zoo.generators.gpt``) trained on characters (byte ids) and on BPE tokens of
  the switching sources, several seeds, held-out bits per character next to the entropy rate and the
  character-unigram rate. The paper's finding: without tokens, training stalls near the unigram rate on
  k > 1 sources; with tokens it approaches the entropy rate.

Dictionary size counts the tokens a tokenizer can emit on the source's alphabet (the characters plus
learned multi-character tokens; unused bytes and specials are not counted). LZW's dictionary is every phrase
its parse of the train split adds, capped at the size (Welch 1984), read back by greedy longest match.
Writes ``markov.json``, ``markov.md`` and ``markov.png`` under ``--out`` (each atomically).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from zoo.errors import ZooError
from zoo.pretrained import atomic_write_bytes, atomic_write_text

SOURCES = ("k=1,delta=0.1", "k=2,delta=0.1", "k=4,delta=0.1", "k=3,kind=random,alphabet=abcd,concentration=0.3")
GPT_SOURCES = SOURCES[:3]
FAMILIES = ("bpe", "unigram", "lzw", "lib")
SIZES = (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
UNIGRAM_SIZES = (8, 32, 128, 512)  # the Unigram trainer is the slow one: fewer sizes
UNIGRAM_MAX_PIECE = 10  # longer pieces make the Unigram trainer's seed set (and its EM) far slower on 2 letters
SUITE = "text-markov"


# -- tokenizers ------------------------------------------------------------------------------------------------


def lzw_phrases(texts: list[str], size: int, alphabet: str) -> list[str]:
    """The LZW dictionary of ``texts``: the alphabet, then each phrase the parse adds (longest known phrase plus
    the next character), until it holds ``size`` entries. Each text is parsed from its start."""
    known, order = set(alphabet), list(alphabet)
    for text in texts:
        start = 0
        while start < len(text) and len(order) < size:
            end = start + 1
            while end <= len(text) and text[start:end] in known:
                end += 1
            if end <= len(text):  # text[start:end] is the longest known phrase plus one character
                known.add(text[start:end])
                order.append(text[start:end])
            start = end - 1
        if len(order) >= size:
            break
    return order


def train_tokenizer(family: str, size: int, texts: list[str], alphabet: str, seed: int = 0):
    """A tokenizer of ``family`` with a dictionary of about ``size`` tokens over ``alphabet``, trained on ``texts``.

    For LiB, ``size`` is the number of documents it reads (its dictionary grows as it learns, it is not set).
    """
    from zoo.text.byte import ByteTokenizer
    from zoo.text.hf import DEFAULT_SPECIALS, BPETokenizer, UnigramTokenizer
    from zoo.text.lib import LiBTokenizer

    learned = size - len(alphabet)  # multi-character tokens beyond the alphabet
    if family == "byte":
        return ByteTokenizer()
    if family != "lib" and learned < 0:
        raise ZooError(f"markov study: dictionary size {size} is smaller than the alphabet {alphabet!r}")
    base = 256 + len(DEFAULT_SPECIALS)
    if family == "bpe":
        tokenizer = BPETokenizer(vocab_size=base + learned)
    elif family == "unigram":
        tokenizer = UnigramTokenizer(vocab_size=base + learned, max_piece_length=UNIGRAM_MAX_PIECE)
    elif family == "lib":
        tokenizer = LiBTokenizer(epochs=size, seed=seed)
    elif family == "lzw":
        tokenizer = LiBTokenizer(epochs=0)
        # LiB's reader is greedy longest match over its chunks, which is how an LZW dictionary encodes.
        tokenizer._compile([p for p in lzw_phrases(texts, size, alphabet) if len(p) > 1])
        return tokenizer
    else:
        raise ZooError(f"markov study: unknown tokenizer family {family!r}; expected byte or one of {FAMILIES}")
    tokenizer.fit(texts)
    return tokenizer


def dictionary_size(tokenizer, alphabet: str) -> int:
    """Tokens whose text is a non-empty string over ``alphabet``: what the tokenizer can emit on the source."""
    allowed = set(alphabet.encode())
    pieces = tokenizer.token_bytes(range(tokenizer.vocab_size))
    return sum(1 for piece in pieces if piece and set(piece) <= allowed)


def tokenizer_rows(sources: list[str], families: list[str], sizes: dict[str, list[int]], work: Path) -> list[dict]:
    """Train every (source, family, size), save it under ``work`` and run the suite on each source's test split.

    ``sizes`` maps a family to its dictionary sizes (LiB: documents read)."""
    from zoo.data import load_dataset
    from zoo.evaluate.runner import evaluate_suite
    from zoo.evaluate.suite import load_suite

    suite = load_suite(SUITE)
    rows = []
    for source in sources:
        train = load_dataset(f"markov:{source},split=train")
        texts, alphabet = train.texts, train.source.alphabet
        plan = [("byte", len(alphabet))]
        plan += [(family, size) for family in families for size in sizes[family]
                 if family == "lib" or size >= len(alphabet)]
        folders, trained = [], []
        for family, size in plan:
            started = time.perf_counter()
            tokenizer = train_tokenizer(family, size, texts, alphabet)
            folder = work / source.replace(",", "_").replace("=", "") / f"{family}-{size}"
            tokenizer.save_pretrained(folder)
            folders.append(str(folder))
            trained.append({"family": family, "setting": size, "dictionary": dictionary_size(tokenizer, alphabet),
                            "train_seconds": round(time.perf_counter() - started, 2)})
        run = evaluate_suite(replace(suite, data=f"markov:{source},split=test"), folders, progress=False)
        for label, info in zip(run.results["tokenizers"], trained):
            values = run.results["results"][label].get("unigram-cross-entropy")
            if not isinstance(values, dict):
                raise ZooError(f"markov study: {label} on {source} gave no unigram-cross-entropy "
                               f"({run.results['notes'].get(label)})")
            rows.append({"source": source, **info, **values})
    return rows


# -- the transformer -------------------------------------------------------------------------------------------


def token_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """The texts' ids, concatenated [N]."""
    return torch.tensor([i for row in tokenizer.encode(texts) for i in row], dtype=torch.long)


def train_gpt(stream: torch.Tensor, vocab_size: int, settings: dict, seed: int):
    """A GPT trained on random windows of ``stream`` (AdamW, linear warmup then cosine decay)."""
    from zoo.generators.gpt import GPT

    context = settings["context"]
    if len(stream) <= context:
        raise ZooError(f"markov study: the train split gives {len(stream)} tokens, fewer than the context {context}")
    model = GPT(vocab_size, context_length=context, dim=settings["dim"], depth=settings["depth"],
                heads=settings["heads"], seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["lr"], betas=(0.9, 0.95), weight_decay=0.01)
    steps, warmup = settings["steps"], max(1, settings["steps"] // 10)
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.arange(context)
    model.train()
    for step in range(steps):
        decay = 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
        scale = (step + 1) / warmup if step < warmup else decay
        for group in optimizer.param_groups:
            group["lr"] = settings["lr"] * scale
        starts = torch.randint(0, len(stream) - context, (settings["batch"],), generator=generator)
        loss = model.training_losses({"ids": stream[starts[:, None] + offsets]}, step)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return model.eval()


@torch.no_grad()
def held_out_bits_per_char(model, stream: torch.Tensor, chars: int, batch: int = 64) -> float:
    """Bits per character of ``stream`` (the ids of ``chars`` characters) cut into windows of the model's context.

    Every id is scored once; the first of each window sees only the start token, as in training.
    """
    import torch.nn.functional as F

    context = model.context_length
    full = len(stream) // context * context
    windows = list(stream[:full].view(-1, context).split(batch))  # [b, context] each
    if full < len(stream):
        windows.append(stream[full:][None])
    nats = sum(float(F.cross_entropy(model(ids).flatten(0, 1), ids.flatten(), reduction="sum")) for ids in windows)
    return nats / math.log(2) / chars


def transformer_rows(sources: list[str], seeds: list[int], gpt_dictionary: int, settings: dict) -> list[dict]:
    """Held-out bits per character of the GPT on characters and on BPE tokens, per source and seed."""
    from zoo.data import load_dataset
    from zoo.metrics.base import EvalContext
    from zoo.metrics.unigram_rate import UnigramCrossEntropy

    rows = []
    for source in sources:
        train, test = (load_dataset(f"markov:{source},split={split}") for split in ("train", "test"))
        train_texts, test_texts, alphabet = train.texts, test.texts, train.source.alphabet
        chars = sum(map(len, test_texts))
        # Both tokenizers first, so a bad dictionary size fails before a GPT trains.
        tokenizers = [(family, size, train_tokenizer(family, size, train_texts, alphabet))
                      for family, size in (("byte", len(alphabet)), ("bpe", gpt_dictionary))]
        for family, size, tokenizer in tokenizers:
            train_ids, test_ids = token_stream(tokenizer, train_texts), token_stream(tokenizer, test_texts)
            unigram = UnigramCrossEntropy(fit=f"markov:{source},split=train")
            unigram.setup(tokenizer)
            unigram.update(EvalContext(tokenizer, {"text": test_texts}))
            for seed in seeds:
                started = time.perf_counter()
                model = train_gpt(train_ids, tokenizer.vocab_size, settings, seed)
                rows.append({
                    "source": source, "tokens": "chars" if family == "byte" else f"bpe-{size}", "seed": seed,
                    "bits_per_char": held_out_bits_per_char(model, test_ids, chars),
                    "unigram_over_tokens": unigram.compute()["bits_per_char"],
                    "entropy_rate": test.entropy_rate, "char_unigram": test.unigram_entropy,
                    "chars_per_token": chars / len(test_ids), "train_seconds": round(time.perf_counter() - started, 1),
                })
    return rows


# -- the report ------------------------------------------------------------------------------------------------


def _f(value, digits: int = 3) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def markdown(study: dict) -> str:
    lines = ["# Tokenization on Markov sources", "", f"Command: `{study['command']}`", ""]
    lines += ["| source | entropy rate | char unigram |", "|---|---:|---:|"]
    lines += [f"| `{s['source']}` | {_f(s['entropy_rate'])} | {_f(s['unigram_entropy'])} |" for s in study["sources"]]
    if study["tokenizers"]:
        lines += ["", "Unigram-over-tokens cross-entropy (bits/char, held-out test split; unigram fitted on the train "
                  "split, add-0.5 smoothing). `setting`: dictionary size asked for (LiB: documents read); "
                  "`dict`: tokens over the alphabet it has.", "",
                  "| source | tokenizer | setting | dict | bits/char | excess over entropy rate | chars/token |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for row in study["tokenizers"]:
            lines.append(f"| `{row['source']}` | {row['family']} | {row['setting']} | {row['dictionary']} | "
                         f"{_f(row['bits_per_char'])} | {_f(row['excess_bits'])} | {_f(row['chars_per_token'], 2)} |")
    if study["transformer"]:
        lines += ["", "GPT held-out bits/char ({dim}-dim, {depth} layers, context {context}, {steps} steps of "
                  "{batch} windows, lr {lr}); mean ± sd over seeds, then each seed:".format(**study["gpt"]), "",
                  "| source | tokens | GPT bits/char | seeds | unigram over tokens | entropy rate | char unigram |",
                  "|---|---|---:|---|---:|---:|---:|"]
        for group in _transformer_groups(study["transformer"]):
            values = [row["bits_per_char"] for row in group]
            spread = _f(values[0])
            if len(values) > 1:
                spread = f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"
            first = group[0]
            lines.append(f"| `{first['source']}` | {first['tokens']} | {spread} | "
                         f"{', '.join(_f(v) for v in values)} | {_f(first['unigram_over_tokens'])} | "
                         f"{_f(first['entropy_rate'])} | {_f(first['char_unigram'])} |")
    return "\n".join(lines) + "\n"


def _transformer_groups(rows: list[dict]) -> list[list[dict]]:
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["source"], row["tokens"]), []).append(row)
    return list(groups.values())


def plot_png(study: dict) -> bytes:
    """One panel per source (bits/char against dictionary size, per family, with the two reference rates),
    and one for the transformer (each seed a point)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = [s for s in study["sources"] if any(r["source"] == s["source"] for r in study["tokenizers"])]
    panels = len(sources) + bool(study["transformer"])
    fig, axes = plt.subplots(1, max(panels, 1), figsize=(4.2 * max(panels, 1), 3.6), squeeze=False)
    for ax, source in zip(axes[0], sources):
        for family in dict.fromkeys(r["family"] for r in study["tokenizers"]):
            rows = sorted((r for r in study["tokenizers"] if r["source"] == source["source"] and r["family"] == family),
                          key=lambda r: r["dictionary"])
            ax.plot([r["dictionary"] for r in rows], [r["bits_per_char"] for r in rows], "o-" if len(rows) > 1 else "o",
                    label=family, markersize=3)
        ax.axhline(source["entropy_rate"], color="k", linestyle="--", linewidth=1, label="entropy rate")
        ax.axhline(source["unigram_entropy"], color="grey", linestyle=":", linewidth=1, label="char unigram")
        ax.set_xscale("log", base=2)
        ax.set(title=source["source"], xlabel="dictionary size", ylabel="bits / char (unigram over tokens)")
    if sources:
        axes[0][0].legend(fontsize=7)
    if study["transformer"]:
        ax = axes[0][-1]
        groups = _transformer_groups(study["transformer"])
        for x, group in enumerate(groups):
            colour = "tab:red" if group[0]["tokens"] == "chars" else "tab:blue"
            ax.scatter([x] * len(group), [r["bits_per_char"] for r in group], color=colour, s=14)
            ax.hlines([group[0]["entropy_rate"], group[0]["char_unigram"]], x - 0.4, x + 0.4, colors=["k", "grey"],
                      linestyles=["--", ":"], linewidth=1)
        ax.set_xticks(range(len(groups)),
                      [f"{g[0]['source'].split(',')[0]}\n{g[0]['tokens']}" for g in groups], fontsize=7)
        ax.set(title="GPT held-out (red: chars, blue: BPE)", ylabel="bits / char")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    return buffer.getvalue()


def write_study(out_dir: Path, study: dict) -> dict[str, Path]:
    paths = {"json": out_dir / "markov.json", "markdown": out_dir / "markov.md", "plot": out_dir / "markov.png"}
    atomic_write_text(paths["json"], json.dumps(study, indent=2, allow_nan=False) + "\n")
    atomic_write_text(paths["markdown"], markdown(study))
    atomic_write_bytes(paths["plot"], plot_png(study))
    return paths


def run_study(args: argparse.Namespace, command: str) -> dict:
    from zoo.data import load_dataset
    from zoo.provenance import git_state

    settings = {"dim": args.dim, "depth": args.depth, "heads": args.heads, "context": args.context,
                "steps": args.steps, "batch": args.batch, "lr": args.lr}
    described = []
    for source in dict.fromkeys([*args.sources, *args.gpt_sources]):
        found = load_dataset(f"markov:{source},split=test").source
        described.append({"source": source, **found.describe()})
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work) if args.work else Path(scratch)
        sizes = {"bpe": args.sizes, "lzw": args.sizes, "unigram": args.unigram_sizes, "lib": args.lib_reads}
        tokenizers = tokenizer_rows(args.sources, args.families, sizes, work)
    transformer = transformer_rows(args.gpt_sources, args.seeds, args.gpt_dictionary, settings) if args.seeds else []
    return {"command": command, "git": git_state(), "sources": described, "tokenizers": tokenizers,
            "gpt": {**settings, "dictionary": args.gpt_dictionary}, "transformer": transformer}


def parser() -> argparse.ArgumentParser:
    found = argparse.ArgumentParser(prog="python -m zoo.studies.markov_tokens", description=__doc__.splitlines()[0])
    found.add_argument("--out", required=True, help="folder for markov.json, markov.md and markov.png")
    found.add_argument("--work", help="keep the trained tokenizer folders here (default: a temporary folder)")
    found.add_argument("--sources", nargs="*", default=list(SOURCES), help="markov spec options, one per source")
    found.add_argument("--families", nargs="*", default=list(FAMILIES), choices=FAMILIES)
    found.add_argument("--sizes", nargs="*", type=int, default=list(SIZES), help="BPE and LZW dictionary sizes")
    found.add_argument("--unigram-sizes", nargs="*", type=int, default=list(UNIGRAM_SIZES))
    found.add_argument("--lib-reads", nargs="*", type=int, default=[1000, 4000, 16000], help="LiB documents read")
    found.add_argument("--gpt-sources", nargs="*", default=list(GPT_SOURCES))
    found.add_argument("--gpt-dictionary", type=int, default=64, help="BPE dictionary size for the GPT")
    found.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2], help="GPT seeds (none: skip the GPT)")
    for name, kind, default in (("dim", int, 64), ("depth", int, 2), ("heads", int, 4), ("context", int, 64),
                                ("steps", int, 300), ("batch", int, 32), ("lr", float, 3e-3)):
        found.add_argument(f"--{name}", type=kind, default=default, help=f"GPT {name} (default {default})")
    found.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    return found


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python -m zoo.studies.markov_tokens " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        study = run_study(args, command)
        paths = write_study(Path(args.out), study)
    except ZooError as error:
        print(f"markov_tokens: error: {error}", file=sys.stderr)
        return 2
    print(paths["markdown"].read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
