"""Evaluation: suites (YAML) run over tokenizers into results.json, a Markdown leaderboard and an HTML report.

=================  ==========================================================
``suite.py``       parse and check a suite
``candidates.py``  the tokenizers of a run, resolved and described
``runner.py``      the run: batches, metrics, state summed across processes
``report.py``      results.md, report.html, figures and examples
``demo.py``        ``zoo demo``: the demo suites over every ready tokenizer
``command.py``     ``zoo eval``
=================  ==========================================================
"""

from zoo.evaluate.candidates import Candidate, resolve_candidate
from zoo.evaluate.runner import SuiteRun, evaluate_suite, run_suite
from zoo.evaluate.suite import Suite, load_suite, parse_suite

__all__ = ["Candidate", "Suite", "SuiteRun", "evaluate_suite", "load_suite", "parse_suite", "resolve_candidate",
           "run_suite"]
