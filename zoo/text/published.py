"""Published text tokenizers by name: OpenAI's tiktoken encodings and open models' hub files.

The entries live in ``registry/text-published.yaml`` (``zoo list published*`` or ``zoo list -t``...; every
one is tagged ``published`` and ``downloads``). Two kinds:

- **OpenAI encodings** (``r50k``, ``p50k``, ``p50k-edit``, ``cl100k``, ``o200k``): ``OpenAIEncoding``, a
  ``TiktokenTokenizer`` whose split pattern and special tokens are tiktoken's own
  (``tiktoken_ext/openai_public.py``), loading the ``.tiktoken`` rank file OpenAI publishes. The file is
  pinned by the sha256 tiktoken checks it against. It is found, in order, at ``zoo.hub.cached_path(URL)``
  under ``$ZOO_CACHE``, or in tiktoken's own cache (``$TIKTOKEN_CACHE_DIR``, ``$DATA_GYM_CACHE_DIR`` or
  ``<tmp>/data-gym-cache``, named by the sha1 of the URL, as ``tiktoken.load.read_file_cached`` names
  it): a copy found there whose sha256 is the published one is copied into zoo's cache when the entry is
  built; ``cl100k_base`` and ``o200k_base`` also come from the copies the bpe-openai package ships (extra
  ``fast-text``), whose sha256 is the published one. Online, zoo downloads the file; offline, one error names
  the file and where to put it.
- **Open models** (Llama 3, Mistral, Gemma 2, Qwen 2.5, DeepSeek V3, BLOOM, XLM-R, BERT, GPT-2, T5):
  ``zoo.text.external``'s ``HFFileTokenizer`` (a ``tokenizer.json``) or ``SentencePieceTokenizer`` (a
  ``tokenizer.model``), fetched from ``hf://`` at a pinned revision where one is known.

``python -m zoo.text.published`` prints the published entries whose file is cached (for
``zoo eval eval/text-parity-published.yaml -t $(python -m zoo.text.published)``) and names the others, with
the path each file would have, in one line on stderr.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

from zoo.errors import ZooError
from zoo.hub import cached_path, sha256_of
from zoo.pretrained import atomic_write_bytes
from zoo.text.external import KNOWN_TIKTOKEN, TiktokenTokenizer

_BLOB = "https://openaipublic.blob.core.windows.net/encodings/"
_FIM = {"<|fim_prefix|>": 50281, "<|fim_middle|>": 50282, "<|fim_suffix|>": 50283}

# What tiktoken_ext/openai_public.py (tiktoken 0.14) states for each encoding: the rank file's URL and the
# sha256 tiktoken checks it against, the split pattern, the special tokens and, where it states one, the
# total vocabulary (ranks + specials) it asserts on load.
ENCODINGS: dict[str, dict] = {
    "r50k_base": {"file": "r50k_base.tiktoken", "n_vocab": 50257,
                  "sha256": "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"},
    "p50k_base": {"file": "p50k_base.tiktoken", "n_vocab": 50281,
                  "sha256": "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"},
    "p50k_edit": {"file": "p50k_base.tiktoken", "n_vocab": None, "extra_specials": _FIM,
                  "sha256": "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"},
    "cl100k_base": {"file": "cl100k_base.tiktoken", "n_vocab": None,
                    "sha256": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"},
    "o200k_base": {"file": "o200k_base.tiktoken", "n_vocab": None,
                   "sha256": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"},
}
_FAMILY = {"r50k_base": "r50k_base", "p50k_base": "p50k_base", "p50k_edit": "p50k_base",
           "cl100k_base": "cl100k_base", "o200k_base": "o200k_base"}


def encoding_url(encoding: str) -> str:
    """The URL OpenAI publishes the encoding's rank file at (the one tiktoken downloads)."""
    return _BLOB + _known(encoding)["file"]


def _known(encoding: str) -> dict:
    if encoding not in ENCODINGS:
        raise ZooError(f"unknown OpenAI encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    return ENCODINGS[encoding]


def tiktoken_cache_path(url: str) -> Path | None:
    """Where ``tiktoken.load.read_file_cached`` keeps ``url``: ``$TIKTOKEN_CACHE_DIR``, else
    ``$DATA_GYM_CACHE_DIR``, else ``<tmp>/data-gym-cache``, file named by the sha1 of the URL; None when
    tiktoken's caching is off (``TIKTOKEN_CACHE_DIR=""``)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        root = os.environ["TIKTOKEN_CACHE_DIR"]
    elif "DATA_GYM_CACHE_DIR" in os.environ:
        root = os.environ["DATA_GYM_CACHE_DIR"]
    else:
        root = os.path.join(tempfile.gettempdir(), "data-gym-cache")
    if root == "":
        return None
    return Path(root) / hashlib.sha1(url.encode()).hexdigest()


def adopt_tiktoken_cache(encoding: str) -> Path | None:
    """Copy tiktoken's cached rank file for ``encoding`` into zoo's cache when zoo has none yet and the copy's
    sha256 is the published one; returns the path copied to, or None (nothing to adopt)."""
    url, expected = encoding_url(encoding), _known(encoding)["sha256"]
    local = cached_path(url)
    theirs = tiktoken_cache_path(url)
    if local.is_file() or theirs is None or not theirs.is_file():
        return None
    if sha256_of(theirs) != expected:  # tiktoken itself would delete and refetch it: not ours to use
        return None
    atomic_write_bytes(local, theirs.read_bytes())
    return local


# The bpe-openai package ships gzipped copies of these rank files; unzipped, their sha256 is the published one
# (checked below on every adoption), so they serve offline as the official files.
PACKAGED = {"cl100k_base": "cl100k_base.tiktoken.gz", "o200k_base": "o200k_base.tiktoken.gz"}


def packaged_rank_file(encoding: str) -> bytes | None:
    """The rank file of ``encoding`` as the bpe-openai package ships it (unzipped), or None when the package is
    absent or ships no copy."""
    import gzip
    from importlib import resources

    if encoding not in PACKAGED:
        return None
    try:
        with resources.files("bpe_openai.data").joinpath(PACKAGED[encoding]).open("rb") as packed:
            return gzip.decompress(packed.read())
    except (ImportError, OSError, gzip.BadGzipFile):
        return None


def adopt_packaged_copy(encoding: str) -> Path | None:
    """Copy bpe-openai's copy of ``encoding``'s rank file into zoo's cache when zoo has none yet and its sha256 is
    the published one; returns the path copied to, or None."""
    url, expected = encoding_url(encoding), _known(encoding)["sha256"]
    local = cached_path(url)
    if local.is_file():
        return None
    data = packaged_rank_file(encoding)
    if data is None or hashlib.sha256(data).hexdigest() != expected:
        return None
    atomic_write_bytes(local, data)
    return local


def adopt_local_copy(encoding: str) -> Path | None:
    """The published rank file from tiktoken's cache, else from the bpe-openai package, into zoo's cache."""
    return adopt_tiktoken_cache(encoding) or adopt_packaged_copy(encoding)


class OpenAIEncoding(TiktokenTokenizer):
    """One of OpenAI's tiktoken encodings, its pattern and specials as tiktoken states them.

    Args:
        encoding: ``r50k_base`` (GPT-2 / GPT-3), ``p50k_base``, ``p50k_edit``, ``cl100k_base`` or ``o200k_base``.

    Built with no rank file (``pretrained=False``) it holds the 256 single bytes only, like every
    ``TiktokenTokenizer``; ``zoo.load(NAME)`` loads the published file. Ids equal
    ``tiktoken.get_encoding(encoding).encode_ordinary(text)``.
    """

    def __init__(self, encoding: str = "cl100k_base"):
        facts = _known(encoding)
        family = KNOWN_TIKTOKEN[_FAMILY[encoding]]
        specials = {**family["special_tokens"], **facts.get("extra_specials", {})}
        self.encoding = encoding
        super().__init__(pattern=family["pattern"], special_tokens=specials, name=encoding)
        adopt_local_copy(encoding)

    def _load_weights(self, path: Path) -> None:
        super()._load_weights(path)
        expected = ENCODINGS[self.encoding]["n_vocab"]
        total = len(self._ranks) + len(self.special_tokens)
        if expected is not None and total != expected:  # what tiktoken asserts (explicit_n_vocab)
            raise ZooError(f"{path}: {len(self._ranks)} ranks + {len(self.special_tokens)} specials = {total} ids; "
                           f"{self.encoding} has {expected}: not the {ENCODINGS[self.encoding]['file']} file")


# -- which published entries are usable now ------------------------------------------------------------------------

def published_names(modality: str = "text") -> list[str]:
    """Registry entries tagged ``published`` of ``modality``."""
    from zoo.registry import default_registry

    registry = default_registry()
    return [n for n in registry.names(modality=modality) if "published" in registry.get(n).tags]


def weights_path(name: str) -> Path | None:
    """Where entry ``name``'s downloaded file lives in ``$ZOO_CACHE`` (its revision's folder), None if it has none."""
    from zoo.registry import get

    weights = get(name).weights
    if not weights or "://" not in weights["path"]:
        return None
    return cached_path(weights["path"], weights.get("revision"))


def split_cached(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """``names`` split into those ready offline and ``{name: cache path}`` of those whose file is missing.
    OpenAI encodings found in tiktoken's cache or the bpe-openai package count as ready (adopted here)."""
    from zoo.registry import get

    ready, missing = [], {}
    for name in names:
        local = weights_path(name)
        entry = get(name)
        if local is not None and not local.is_file() and entry.target.endswith(":OpenAIEncoding"):
            adopt_local_copy(entry.config.get("encoding", "cl100k_base"))
        if local is None or local.is_file():
            ready.append(name)
        else:
            missing[name] = str(local)
    return ready, missing


def main(argv: list[str] | None = None) -> int:
    """Print the cached published text entries (space-separated); name the uncached ones in one stderr line."""
    ready, missing = split_cached(published_names())
    if missing:
        print(f"skipped {len(missing)} published entries not in the cache: "
              + ", ".join(f"{n} ({p})" for n, p in missing.items()), file=sys.stderr)
    print(" ".join(ready))
    return 0 if ready else 1


if __name__ == "__main__":
    raise SystemExit(main())
