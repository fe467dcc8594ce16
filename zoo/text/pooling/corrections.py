"""The pooling tokenizer's id layout: one code per segment, then corrections only where the code's spelling is wrong.

With ``K`` codes: ids ``[0, K)`` are codes, ``[K, K + 256)`` escape bytes (SentencePiece's byte fallback) and
``K + 256 + p - 1`` (p >= 1) keeps the first ``p`` bytes of the spelling of the code just before it. A segment is
written as ``[k]`` when code ``k`` spells it, ``[k, keep p, escapes of the rest]`` when the spelling and the segment
share ``p >= 2`` leading bytes, else ``[k, escapes of the whole segment]``: whichever is shortest. Reading tolerates
any id sequence: escapes with no code before them are bytes, a keep that follows no code adds nothing.
"""

from __future__ import annotations

from zoo.text.base import bytes_to_text

ESCAPES = 256  # one escape id per byte value


def shared_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of two byte strings."""
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def segment_ids(code: int, segment: bytes, spelling: bytes, num_codes: int) -> list[int]:
    """A segment's ids: its code, then the cheapest correction of the code's spelling (none when it is right)."""
    if spelling == segment:
        return [code]
    shared = shared_prefix(spelling, segment)
    if shared < 2:  # a keep id would cost as much as it saves
        return [code, *(num_codes + byte for byte in segment)]
    return [code, num_codes + ESCAPES + shared - 1, *(num_codes + byte for byte in segment[shared:])]


def id_bytes(ids: list[int], spellings: list[bytes], num_codes: int) -> list[bytes]:
    """The bytes each id adds: a code its spelling, or nothing when corrections follow it; a keep id the prefix of the
    spelling of the code just before it; an escape id its byte. Joined, they are the decoded bytes."""
    escape, keep = num_codes, num_codes + ESCAPES
    out = []
    for index, i in enumerate(ids):
        before = ids[index - 1] if index else None
        if i >= keep:
            out.append(spellings[before][: i - keep + 1] if before is not None and before < escape else b"")
        elif i >= escape:
            out.append(bytes([i - escape]))
        elif index + 1 < len(ids) and ids[index + 1] >= escape:
            out.append(b"")  # corrections follow: they say what of the spelling stays
        else:
            out.append(spellings[i])
    return out


def id_strings(ids: list[int], spellings: list[bytes], num_codes: int) -> list[str]:
    """A code as its spelling, an escape id as ``<0xNN>``, a keep id as ``<keep p>``."""
    escape, keep = num_codes, num_codes + ESCAPES
    return [f"<keep {i - keep + 1}>" if i >= keep else f"<0x{i - escape:02X}>" if i >= escape
            else bytes_to_text(spellings[i]) for i in ids]  # fmt: skip
