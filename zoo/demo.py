"""``zoo demo``: a quick tour of the registry on built-in data."""

from __future__ import annotations

import zoo


def run_demo(args) -> int:
    names = zoo.list_tokenizers()
    print(f"zoo {zoo.__version__}: {len(names)} registered tokenizers")
    for modality in ("text", "image", "audio"):
        chosen = zoo.list_tokenizers(modality=modality)
        print(f"  {modality:<5} {len(chosen):>2}: {', '.join(chosen) or '-'}")
    sample = "héllo 🌍 ١٢٣ — zoo"
    for name in zoo.list_tokenizers(modality="text", pretrained=True):
        tok = zoo.load(name, pretrained=True)
        ids = tok.encode(sample)
        back = tok.decode(ids)
        status = "lossless" if back == sample else "LOSSY"
        print(f"  {name}: {len(sample.encode())} bytes -> {len(ids)} tokens, round trip {status}")
        if back != sample:
            return 1
    return 0
