"""Embedding transfer to a new vocabulary (``embeddings.py``) and its command, ``zoo transfer`` (``command.py``)."""

from zoo.transfer.embeddings import METHODS, TransferResult, sparsemax, transfer_embeddings, transfer_file

__all__ = ["METHODS", "TransferResult", "sparsemax", "transfer_embeddings", "transfer_file"]
