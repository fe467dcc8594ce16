"""Where weight files come from: shipped with the package, a local path, ``hf://`` or ``https://``.

Remote files land in a cache (``$ZOO_CACHE``, default ``~/.cache/zoo``), are written atomically and
are checked against their sha256 before use. Offline, a remote file that is not cached gives one
error saying exactly where to put it.

Pins. A published sha256 (``sha256=``) is checked on every use. Where the source publishes none, the
hub ``revision`` (a commit) fixes what is fetched, and the sha256 of the first copy seen is recorded
next to it (``FILE.sha256``, trust on first use) and checked on every later use, so a file swapped in
the cache is refused. ``pin_of`` describes which pin an entry has, for ``zoo info``.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from zoo.errors import ZooError
from zoo.resources import resolve_resource

_MAX_NAME = 200  # characters in one cached file or folder name (file systems allow 255 bytes)


def cache_dir() -> Path:
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo")).expanduser()


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str | None) -> Path:
    if expected is not None:
        actual = sha256_of(path)
        if actual != expected.lower():
            raise ZooError(f"{path}: sha256 is {actual}, expected {expected}; the file is corrupt or not the one named")
    return path


def hf_parts(source: str) -> list[str]:
    """``hf://ORG/REPO/PATH/TO/FILE`` split into checked parts: no empty, '.', '..', backslashed, drive-like or
    control-character part, so the cached copy stays inside the cache and the hub path is the one named."""
    parts = source[len("hf://"):].split("/")
    expected = "expected hf://ORG/REPO/PATH/TO/FILE"
    if len(parts) < 3:
        raise ZooError(f"{source!r}: {expected} (at least three parts)")
    for part in parts:
        if part in ("", ".", "..") or "\\" in part or ":" in part or not part.isprintable() or len(part) > _MAX_NAME:
            raise ZooError(f"{source!r}: part {part[:40]!r} is not allowed; {expected} whose parts are names "
                           f"(not empty, '.' or '..', no backslash, ':' or control character, at most {_MAX_NAME} "
                           "characters)")
    return parts


def _url_file_name(source: str) -> str:
    """The last part of a URL's path, kept to safe characters, as the cached file's name. A share link whose path
    ends at a folder and names its file in the query (Seafile's ``.../files/?p=%2Fckpts%2Flast.ckpt&dl=1``, where
    taming-transformers' checkpoints live) takes that file's name, so the cached file keeps its suffix."""
    parts = urllib.parse.urlsplit(source)
    named = urllib.parse.parse_qs(parts.query).get("p", [""])[0]
    name = (named or parts.path).rstrip("/").rsplit("/", 1)[-1]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")[:_MAX_NAME]
    return name or "download"


def checked_revision(source: str, revision: str | None) -> str | None:
    """A hub revision usable as one cache folder name: a commit hash, tag or branch without '/' or '..'."""
    if revision is None:
        return None
    if not source.startswith("hf://"):
        raise ZooError(f"{source}: a revision pins hf:// files only; expected no revision for a URL or path")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", revision) or ".." in revision:
        raise ZooError(f"{source}: revision {revision!r} is not allowed; expected a commit hash, tag or branch name "
                       "of letters, digits, '.', '_' and '-'")
    return revision


def cached_path(source: str, revision: str | None = None) -> Path:
    """Where a remote source is kept in the cache (always inside it); each pinned revision has its own folder."""
    root = cache_dir().resolve()
    revision = checked_revision(source, revision)
    if source.startswith("hf://"):
        parts = hf_parts(source)
        if revision is not None:
            parts = [*parts[:2], f"@{revision}", *parts[2:]]
        local = root / "hf" / Path(*parts)
    else:
        # the digest keeps URLs apart; the name only helps a person find the file
        local = root / "url" / hashlib.sha256(source.encode()).hexdigest()[:16] / _url_file_name(source)
    if not local.resolve().is_relative_to(root):  # a link planted inside the cache must not lead out of it
        raise ZooError(f"{source}: its cache path {local} leads outside the cache {root}")
    return local


def remote_cache_path(weights: dict | None) -> Path | None:
    """For a registry ``weights`` mapping that downloads: where its file is cached (at its revision); else None.
    With ``select`` (a sharded checkpoint), the file its selected tensors are gathered into."""
    if not weights or not weights["path"].startswith(("hf://", "https://", "http://")):
        return None
    if weights.get("select"):
        return selected_path(weights["path"], weights.get("revision"), weights["select"])
    return cached_path(weights["path"], weights.get("revision"))


def resolve_entry_weights(weights: dict) -> Path:
    """A registry ``weights`` mapping resolved to one local, verified file (``resolve_weights`` or, with
    ``select``, ``resolve_selected``)."""
    if weights.get("select"):
        return resolve_selected(weights["path"], weights["select"], weights.get("sha256"), weights.get("revision"))
    return resolve_weights(weights["path"], weights.get("sha256"), weights.get("revision"))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or os.environ.get("ZOO_OFFLINE", "0") != "0"


def _download(source: str, destination: Path, revision: str | None = None) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    os.close(fd)
    try:
        if source.startswith("hf://"):
            try:
                from huggingface_hub import hf_hub_download
            except ImportError:
                raise OSError("huggingface_hub is not installed (pip install huggingface_hub)") from None
            parts = hf_parts(source)
            fetched = hf_hub_download("/".join(parts[:2]), "/".join(parts[2:]), revision=revision)
            with open(fetched, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)  # in blocks: a shard of a sharded checkpoint is several GB
        else:
            with urllib.request.urlopen(source, timeout=30) as response, open(tmp, "wb") as dst:
                shutil.copyfileobj(response, dst)
        os.replace(tmp, destination)
    finally:
        Path(tmp).unlink(missing_ok=True)


def recorded_sha256_path(local: Path) -> Path:
    """Where the first-seen sha256 of a cached file without a published one is kept."""
    return local.with_name(local.name + ".sha256")


def _checked_first_use(local: Path) -> Path:
    """``local``, checked against the sha256 recorded when it was first used; on first use that record is written
    (atomically) from this one hash of the file."""
    actual = sha256_of(local)
    record = recorded_sha256_path(local)
    if not record.is_file():
        _write_atomically(record, (actual + "\n").encode("ascii"))
        return local
    recorded = record.read_text(encoding="ascii", errors="replace").strip()
    if not re.fullmatch(r"[0-9a-f]{64}", recorded):
        raise ZooError(f"{record}: not a sha256 record (64 hex digits); delete it to trust {local} again")
    if actual != recorded:
        raise ZooError(f"{local}: sha256 is {actual}, but {recorded} was recorded when it was first used "
                       f"({record}); the cached file changed. Delete both to fetch it again")
    return local


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` into ``path`` through a temporary file beside it: the file is whole or absent."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def pin_of(source: str, sha256: str | None = None, revision: str | None = None) -> dict:
    """Which pin a weights source has: the published sha256, or the revision and/or the first-use record."""
    if sha256 is not None:
        return {"kind": "sha256 (published)", "sha256": sha256.lower(), "revision": revision}
    if not source.startswith(("hf://", "https://", "http://")):
        return {"kind": "none (a local file)", "sha256": None, "revision": None}
    record = recorded_sha256_path(cached_path(source, revision))
    recorded = record.read_text(encoding="ascii", errors="replace").strip() if record.is_file() else None
    kind = "revision + sha256 on first download" if revision else "sha256 on first download"
    return {"kind": kind, "sha256": recorded, "revision": revision, "recorded_at": str(record)}


SHARD_INDEX_SUFFIX = ".safetensors.index.json"


def checked_select(source: str, select) -> str:
    """A registry ``weights.select``: a non-empty tensor-name prefix, taken from a sharded hub checkpoint whose
    ``path`` is its ``.safetensors.index.json``."""
    if not (isinstance(select, str) and select and source.startswith("hf://") and source.endswith(SHARD_INDEX_SUFFIX)):
        raise ZooError(f"{source}: weights.select takes a tensor-name prefix from a sharded hub checkpoint; "
                       f"weights.path must then be an hf:// path ending in {SHARD_INDEX_SUFFIX} "
                       f"(got select {select!r})")
    return select


def selected_path(source: str, revision: str | None, select: str) -> Path:
    """Where the tensors under ``select`` of a sharded checkpoint (``source`` is its index) are kept once gathered."""
    index = cached_path(source, revision)
    digest = hashlib.sha256(select.encode()).hexdigest()[:12]
    return index.with_name(f"{index.name[: -len(SHARD_INDEX_SUFFIX)]}.select-{digest}.safetensors")


def _shards_holding(index: Path, select: str) -> list[str]:
    """The shard files a safetensors index names for the tensors whose names start with ``select``."""
    import json

    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
    except (ValueError, KeyError, TypeError):
        raise ZooError(f"{index}: not a safetensors index (a JSON object with a 'weight_map')") from None
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise ZooError(f"{index}: 'weight_map' must map tensor names to shard file names")
    shards = sorted({shard for name, shard in weight_map.items() if name.startswith(select)})
    if not shards:
        raise ZooError(f"{index}: no tensor name starts with {select!r} (first names: {sorted(weight_map)[:4]})")
    for shard in shards:  # a shard is a file beside the index, never a path that leaves the repository
        if "/" in shard or "\\" in shard or shard.startswith(".") or not shard.endswith(".safetensors"):
            raise ZooError(f"{index}: shard name {shard!r} is not a .safetensors file name beside the index")
    return shards


def resolve_selected(source: str, select: str, sha256: str | None = None, revision: str | None = None) -> Path:
    """The tensors under the prefix ``select`` of a sharded safetensors checkpoint, gathered once into one file.

    ``source`` is the checkpoint's ``model.safetensors.index.json`` (pinned by ``sha256`` or on first use, like any
    file); only the shards it names for ``select`` are fetched (each pinned on first use at the same revision), and
    their ``select`` tensors are written to one cached safetensors file (names kept), itself checked on every later
    use. A 7B multimodal checkpoint whose image tokenizer sits under ``model.vqmodel.`` thus yields a file of just
    the tokenizer, read by the family as a whole-model file."""
    checked_select(source, select)
    gathered = selected_path(source, revision, select)
    if gathered.is_file():
        return _checked_first_use(gathered)
    from safetensors import safe_open
    from safetensors.torch import save

    index = resolve_weights(source, sha256, revision)
    folder = source[: -len(index.name)]
    tensors = {}
    for shard in _shards_holding(index, select):
        local = resolve_weights(folder + shard, revision=revision)
        with safe_open(str(local), framework="pt") as handle:
            tensors.update({name: handle.get_tensor(name) for name in handle.keys() if name.startswith(select)})
    _write_atomically(gathered, save(tensors, metadata={"source": source, "select": select,
                                                         "index_sha256": sha256_of(index)}))
    return _checked_first_use(gathered)


def resolve_weights(source: str, sha256: str | None = None, revision: str | None = None) -> Path:
    """A local, verified path for ``source``; downloads into the cache only when online."""
    if source.startswith(("hf://", "https://", "http://")):
        local = cached_path(source, revision)
        if not local.is_file():
            where = f"put the file at {local} (or set ZOO_CACHE)"
            if _offline():
                raise ZooError(f"{source} is not cached and downloads are off (HF_HUB_OFFLINE): {where}")
            try:
                _download(source, local, revision)
            except ZooError:
                raise
            except Exception as err:  # network errors of every kind end the same way for the user
                raise ZooError(f"could not download {source} ({type(err).__name__}: {err}); {where}") from None
        return verify_sha256(local, sha256) if sha256 is not None else _checked_first_use(local)
    local = resolve_resource(source)
    if not local.is_file():
        raise ZooError(f"weights file {source} not found (looked in the working directory and the package data)")
    return verify_sha256(local, sha256)
