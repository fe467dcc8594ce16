"""SentinelLMs' keyed vocabulary: a passkey permutes a tokenizer's ids, so only key holders read or write them.

Mishra, Li and Deo, "SentinelLMs: Encrypted Input Adaptation and Fine-tuning of Language Models for Private and
Secure Inference" (AAAI 2024, https://arxiv.org/abs/2312.17342; code ``abhijitmishra/sentinellm-aaai2024``,
``llm_converter.py``). The client encodes text with the base tokenizer and sends the permuted ids; the server runs a
model whose embedding rows were permuted (and transformed) with the same key (``zoo.transfer.sentinel``), so it
computes on ids it cannot map back to text.

    >>> tok = SentinelTokenizer(zoo.load("bpe-32k", pretrained=True), key="a long passphrase")
    >>> ids = tok.encode("hello")              # permuted ids; tok.decode(ids) == "hello"
    >>> tok.save_pretrained("enc")             # the key is not written; loading asks for it again
    >>> SentinelTokenizer.from_pretrained("enc", key="a long passphrase")   # or $ZOO_SENTINEL_KEY

Two key schemes (``scheme``):

==========  ========================================================================================================
``keyed``   the default. The passkey is stretched with scrypt (n=2^14, r=8, p=1, ~0.1 s and 16 MiB per guess) into a
            256-bit key; keyed BLAKE2b is the PRF: non-special ids are sorted by ``BLAKE2b_k(id)``, a uniformly random
            permutation of all of them, and the glide scalars are PRF outputs too. Without the key the permutation is
            indistinguishable from a random one.
``paper``   parity with the reference code: seed = (sum of the passkey's code points) mod 10000, so anagrams
            ("llm123", "lml123") share a key and there are only 10^4 keys to try; the sorted non-special ids are
            shuffled 10 times by ``random.Random(seed)`` (a fresh generator each time, as there), cut at
            ``len // 2 + 5`` and item i of the first part swapped with item i of the second (an involution; the
            ~10 leftover ids stay in place). The glide scalars are ``random.random()`` draws from the same seed,
            line then translation per step. For reproducing the paper's setup only: it is not a secure key.
==========  ========================================================================================================

Special tokens (the base tokenizer's ``special_ids``) keep their ids under both schemes, as in the paper.

What is saved: the base tokenizer under ``base/`` and a config with the scheme, the glide steps and, unless
``store_fingerprint=False``, a key fingerprint (a PRF output of the stretched key) so that a wrong key is one clear
error instead of silently wrong ids. The fingerprint lets someone holding the folder test passphrase guesses offline
at scrypt's cost each; with the ``paper`` scheme its 10^4 seeds can be tried against the model anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from zoo.errors import ZooError
from zoo.text.base import TextTokenizer

SCHEMES = ("keyed", "paper")
ENV_KEY = "ZOO_SENTINEL_KEY"
BASE_FOLDER = "base"  # where save_pretrained puts the wrapped tokenizer, beside config.json
# scrypt's cost (RFC 7914's interactive setting) and a fixed salt: the derived key must be the same for every client
# and server that share a passkey, so the salt only separates zoo's keys from other uses of the same passphrase.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1, "salt": b"zoo.text.sentinel/v1"}
# the paper's shuffle_param, pivot offset and seed modulus (llm_converter.py: random_shuffle, prepare_seed)
PAPER_SHUFFLES, PAPER_PIVOT_OFFSET, PAPER_SEED_MODULUS = 10, 5, 10000


@dataclass(frozen=True)
class SentinelKey:
    """What a passkey decides for one vocabulary.

    Attributes:
        permutation: ``permutation[plain_id]`` is the encrypted id (specials map to themselves).
        glide: ``(line, translation)`` scalars per glide step: reflect across the hyperplane normal to ``line * 1``,
            then add ``translation * 1`` (``zoo.transfer.sentinel.glide``).
        fingerprint: a PRF output of the key, hex, that identifies it without revealing it.
    """

    permutation: tuple[int, ...]
    glide: tuple[tuple[float, float], ...]
    fingerprint: str

    @property
    def inverse(self) -> tuple[int, ...]:
        out = [0] * len(self.permutation)
        for plain, encrypted in enumerate(self.permutation):
            out[encrypted] = plain
        return tuple(out)


def paper_seed(passkey: str) -> int:
    """The reference's seed: the sum of the passkey's code points, mod 10000 (``prepare_seed``)."""
    return sum(ord(ch) for ch in passkey) % PAPER_SEED_MODULUS


def stretch(passkey: str) -> bytes:
    """The 256-bit key of the ``keyed`` scheme: scrypt of the passkey's UTF-8 bytes."""
    return hashlib.scrypt(passkey.encode("utf-8", "surrogatepass"), dklen=32, maxmem=64 * 2**20, **_SCRYPT)


def _prf(key: bytes, purpose: bytes, message: bytes, size: int = 16) -> bytes:
    """Keyed BLAKE2b, domain-separated by ``purpose`` (its personalisation field, at most 16 bytes)."""
    return hashlib.blake2b(message, key=key, person=purpose, digest_size=size).digest()


def _unit(key: bytes, purpose: bytes, step: int) -> float:
    """A PRF output as a float in (0, 1]: never 0, so a glide line ``line * 1`` is never the zero vector."""
    value = int.from_bytes(_prf(key, purpose, step.to_bytes(8, "little"), 8), "little")
    return (value + 1) / 2**64


def keyed_permutation(key: bytes, vocab_size: int, fixed: set[int]) -> list[int]:
    """Non-fixed ids sorted by their PRF value: a uniformly random permutation of them, decided by the key."""
    movable = [i for i in range(vocab_size) if i not in fixed]
    ranked = sorted(movable, key=lambda i: _prf(key, b"zoo-sentinel-id", i.to_bytes(8, "little")))
    permutation = list(range(vocab_size))
    for plain, encrypted in zip(movable, ranked):
        permutation[plain] = encrypted
    return permutation


def paper_permutation(seed: int, vocab_size: int, fixed: set[int]) -> list[int]:
    """The reference's involution (``random_shuffle``): shuffle, cut past the middle, swap the two halves pairwise."""
    order = [i for i in range(vocab_size) if i not in fixed]
    for _ in range(PAPER_SHUFFLES):
        random.Random(seed).shuffle(order)
    pivot = len(order) // 2 + PAPER_PIVOT_OFFSET
    permutation = list(range(vocab_size))
    for a, b in zip(order[:pivot], order[pivot:]):
        permutation[a], permutation[b] = b, a
    return permutation


def derive_key(passkey: str, vocab_size: int, fixed: Iterable[int] = (), scheme: str = "keyed",
               glide_steps: int = 2) -> SentinelKey:
    """The permutation, glide scalars and fingerprint a passkey gives for a vocabulary of ``vocab_size`` ids."""
    if not isinstance(passkey, str) or not passkey:
        got = "an empty str" if isinstance(passkey, str) else f"a {type(passkey).__name__}"
        raise ZooError(f"SentinelTokenizer: the passkey must be a non-empty str, got {got}")
    if scheme not in SCHEMES:
        raise ZooError(f"SentinelTokenizer: scheme must be one of {list(SCHEMES)}, got {scheme!r}")
    if isinstance(glide_steps, bool) or not isinstance(glide_steps, int) or glide_steps < 0:
        raise ZooError(f"SentinelTokenizer: glide_steps must be an int >= 0, got {glide_steps!r}")
    key = stretch(passkey)
    fingerprint = _prf(key, b"zoo-sentinel-fp", scheme.encode()).hex()
    if scheme == "keyed":
        permutation = keyed_permutation(key, vocab_size, set(fixed))
        glide = tuple((_unit(key, b"zoo-sentinel-l", s), _unit(key, b"zoo-sentinel-t", s)) for s in range(glide_steps))
    else:
        seed = paper_seed(passkey)
        permutation = paper_permutation(seed, vocab_size, set(fixed))
        draws = random.Random(seed)  # the reference seeds Python's global generator with the same seed
        glide = tuple((draws.random(), draws.random()) for _ in range(glide_steps))
    return SentinelKey(tuple(permutation), glide, fingerprint)


def resolve_passkey(key: str | None, owner: str = "SentinelTokenizer") -> str:
    """The passkey given, else ``$ZOO_SENTINEL_KEY``; neither is an error that says how to give one."""
    if key is None:
        key = os.environ.get(ENV_KEY) or None
    if key is None:
        raise ZooError(f"{owner}: needs its passkey; pass key=... or set ${ENV_KEY} (checkpoints never store it)")
    return key


class SentinelTokenizer(TextTokenizer):
    """Wraps a text tokenizer: ``encode`` gives the key's permuted ids, ``decode`` inverts them with the key.

    Args:
        base: the tokenizer to wrap (an object, a registry name or a checkpoint folder).
        key: the passkey; None reads ``$ZOO_SENTINEL_KEY``. Never saved.
        scheme: ``"keyed"`` (scrypt + keyed BLAKE2b, the default) or ``"paper"`` (the reference's seed; not secure).
        glide_steps: how many reflection + translation steps the model's input embeddings get (the paper's
            ``--embedding_rescaling_factor``; its models use 3 and 10).
        store_fingerprint: whether ``save_pretrained`` records the key's fingerprint (a clear wrong-key error on load).
        key_fingerprint: the fingerprint a loaded checkpoint expects; a different key is refused.
    """

    requires_weights = False  # the wrapped tokenizer is saved in its own folder, base/

    def __init__(self, base, key: str | None = None, scheme: str = "keyed", glide_steps: int = 2,
                 store_fingerprint: bool = True, key_fingerprint: str | None = None):
        from zoo.loading import load_tokenizer

        self.base = load_tokenizer(base, modality="text", owner="SentinelTokenizer base")
        if isinstance(self.base, SentinelTokenizer):
            raise ZooError("SentinelTokenizer: base is already a SentinelTokenizer; wrap the plain tokenizer once")
        self.scheme, self.glide_steps, self.store_fingerprint = scheme, glide_steps, bool(store_fingerprint)
        self.special_ids = dict(getattr(self.base, "special_ids", {}) or {})
        fixed = set(self.special_ids.values())
        self.sentinel_key = derive_key(resolve_passkey(key), self.base.vocab_size, fixed, scheme, glide_steps)
        expected = None if key_fingerprint is None else str(key_fingerprint).encode()
        if expected is not None and not hmac.compare_digest(expected, self.fingerprint.encode()):
            raise ZooError("SentinelTokenizer: wrong key: its fingerprint does not match the one this checkpoint "
                           f"records ({key_fingerprint}); expected the passkey the folder was saved with")
        self._inverse = self.sentinel_key.inverse
        # The recorded config never holds the passkey; the base is saved beside it (save_pretrained).
        self._zoo_config = {
            "base": BASE_FOLDER,
            "scheme": scheme,
            "glide_steps": glide_steps,
            "store_fingerprint": self.store_fingerprint,
            "key_fingerprint": self.fingerprint if self.store_fingerprint else None,
        }

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size

    @property
    def lossless(self) -> bool:
        return self.base.lossless

    @property
    def fingerprint(self) -> str:
        return self.sentinel_key.fingerprint

    @property
    def permutation(self) -> tuple[int, ...]:
        """``permutation[plain_id]`` = encrypted id."""
        return self.sentinel_key.permutation

    def encrypt(self, ids: list[int]) -> list[int]:
        """Plain base-tokenizer ids -> this key's ids."""
        permutation = self.sentinel_key.permutation
        return [permutation[i] for i in ids]

    def decrypt(self, ids: list[int]) -> list[int]:
        """This key's ids -> plain base-tokenizer ids."""
        inverse = self._inverse
        return [inverse[i] for i in ids]

    def encode_one(self, text: str) -> list[int]:
        return self.encrypt(self.base.encode_one(text))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encrypt(row) for row in self.base.encode_batch(texts)]

    def decode_one(self, ids: list[int]) -> str:
        return self.base.decode_one(self.decrypt(ids))

    def token_strings(self, ids: list[int]) -> list[str]:
        return self.base.token_strings(self.decrypt(ids))

    def token_bytes(self, ids: list[int]) -> list[bytes]:
        return self.base.token_bytes(self.decrypt(ids))

    def save_pretrained(self, directory: str | Path, metadata: dict | None = None) -> Path:
        """Writes ``base/`` (the wrapped tokenizer's own folder), then config.json, which marks a complete folder."""
        self.base.save_pretrained(Path(directory) / BASE_FOLDER)
        return super().save_pretrained(directory, metadata)

    @classmethod
    def from_pretrained(cls, directory: str | Path, trust_remote_code: bool = False, verify: bool = True,
                        dtype_cast: bool = False, key: str | None = None, **overrides):
        """Rebuild from a folder; the passkey comes from ``key`` or ``$ZOO_SENTINEL_KEY``."""
        from zoo.pretrained import from_folder

        base_folder = Path(directory) / BASE_FOLDER
        if not base_folder.is_dir():
            raise ZooError(f"{directory}: missing {BASE_FOLDER}/ (the wrapped tokenizer) next to config.json")
        base = from_folder(base_folder, trust_remote_code=trust_remote_code, verify=verify)
        return super().from_pretrained(directory, trust_remote_code=trust_remote_code, verify=verify,
                                       dtype_cast=dtype_cast, base=base, key=key, **overrides)

    def __repr__(self) -> str:
        return (f"SentinelTokenizer(base={type(self.base).__name__}, scheme={self.scheme!r}, "
                f"vocab_size={self.vocab_size})")
