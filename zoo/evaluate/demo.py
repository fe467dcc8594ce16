"""``zoo demo``: the quick suite of each modality (``eval/demo-<modality>.yaml``) on built-in data,
over every registered tokenizer that is ready to use (``zoo.list_tokenizers(modality=m, pretrained=True)``).

It writes one self-contained ``report.html`` (plus ``<modality>/results.{json,md}``) and prints each
leaderboard. New tokenizers with weights join the demo as soon as they are registered; entries whose weights
download (published tokenizers) join once their file is in the cache, and are named in one line until then.
"""

from __future__ import annotations

from pathlib import Path

from zoo import registry
from zoo._version import __version__
from zoo.errors import ZooError
from zoo.hub import cache_dir, remote_cache_path
from zoo.registry import MODALITIES


def uncached_downloads(names: list[str]) -> dict[str, str]:
    """The entries among ``names`` whose weights come from ``hf://`` / ``https://`` and are not cached yet,
    each with the cache path its file would have."""
    missing = {}
    for name in names:
        local = remote_cache_path(registry.get(name).weights)
        if local is not None and not local.is_file():
            missing[name] = str(local)
    return missing


def run_demo(args) -> int:
    from zoo.evaluate import evaluate_suite
    from zoo.evaluate.report import markdown_table, render_page, render_section, write_report
    from zoo.pretrained import atomic_write_text

    out = Path(args.out)
    limit = getattr(args, "limit", None)
    print(f"zoo {__version__}: {len(registry.default_registry())} registered tokenizers; demo report in {out}/")
    sections, ran = [], 0
    for modality in MODALITIES:
        names = registry.default_registry().names(modality=modality, pretrained=True)
        uncached = uncached_downloads(names)  # the demo never downloads: these wait until their file is cached
        names = [name for name in names if name not in uncached]
        # Entries tagged "slow" (a model step per byte, e.g. Equal-Info Windows) would take the demo minutes.
        slow = [name for name in names if "slow" in registry.get(name).tags]
        names = [name for name in names if name not in slow]
        if not names and not uncached and not slow:
            print(f"\n[{modality}] no pretrained {modality} tokenizers registered yet")
            continue
        print(f"\n[{modality}] eval/demo-{modality}.yaml over {', '.join(names) or 'none of them'}")
        if uncached:
            print(f"[{modality}] skipped {', '.join(uncached)}: their weights download and are not in the cache "
                  f"({cache_dir()}); zoo.load(NAME, pretrained=True) online fetches them")
        if slow:
            print(f"[{modality}] skipped {', '.join(slow)}: slow to encode (tagged slow); "
                  f"zoo eval eval/demo-{modality}.yaml -t {slow[0]} runs it")
        if not names:
            continue
        try:
            run = evaluate_suite(f"demo-{modality}", names, limit=limit)
        except ZooError as err:
            print(f"[{modality}] skipped: {err}")
            continue
        write_report(out / modality, run.results, figures=run.figures, examples=run.examples)
        sections.append(render_section(run.results, run.figures, run.examples))
        print(markdown_table(run.results), end="")
        for label, notes in run.results.get("notes", {}).items():
            for note in notes:
                print(f"  {label}: {note}")
        ran += 1
    if not ran:
        print("\nnothing to evaluate: no modality had both pretrained tokenizers and its demo data")
        return 1
    atomic_write_text(out / "report.html", render_page("zoo demo", sections))
    print(f"\nreport: {out / 'report.html'} (per modality: {out}/<modality>/results.json, results.md)")
    return 0
