"""Errors that are the user's to fix: the CLI prints them as one line and exits with code 2."""


class ZooError(ValueError):
    """Bad input, a bad file or a missing resource; the message names what was wrong and what was expected."""
