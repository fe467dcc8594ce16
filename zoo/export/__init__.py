"""``zoo export``: a text tokenizer written as tokenizer.json, tiktoken files or a SentencePiece model, each checked by
its own library (the work is ``zoo.text.export``; this room holds the command)."""
