"""Studies: experiments that train and evaluate several models end to end and report what they found.

``python -m zoo.studies.pfid_study`` -- does pFID predict generation quality (docs/pfid-study.md)?
``python -m zoo.studies.markov_tokens`` -- tokenizers on k-th order Markov sources (docs/markov.md).
``python -m zoo.studies.arithmetic_probe`` -- does digit grouping change how a small GPT learns arithmetic
(docs/arithmetic-probe.md)?
"""
