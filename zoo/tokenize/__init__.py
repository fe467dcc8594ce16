"""``zoo tokenize``: datasets into sharded, resumable token files on Ray Data (``runner.py``), in the format of
``zoo.data.token_shards`` (``shards.py`` writes it), and its command (``command.py``)."""

from zoo.tokenize.runner import tokenize

__all__ = ["tokenize"]
