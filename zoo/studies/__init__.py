"""Studies: experiments that train and evaluate several models end to end and report what they found.

``python -m zoo.studies.pfid_study`` -- does pFID predict generation quality (docs/pfid-study.md)?
"""
