"""Audio tokenizer families, one folder each: ``beats/`` (BEATs' acoustic tokenizers and SSL models)."""
