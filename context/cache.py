"""The persistent index cache: one msgpack file per workspace root, entries keyed by path, mtime and
size, so that a restart re-parses only the files that changed."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import msgspec
import platformdirs

from codeflow.context.symbols import FileIndex

# Bump when extraction changes what a FileIndex holds, so that stale caches are ignored.
FORMAT = 5
log = logging.getLogger(__name__)


class _CacheFile(msgspec.Struct, kw_only=True):
    format: int
    root: str
    files: list[FileIndex]


_decoder = msgspec.msgpack.Decoder(_CacheFile)
_encoder = msgspec.msgpack.Encoder()


def default_dir() -> Path:
    """The user cache dir for the index."""
    return Path(platformdirs.user_cache_dir("codeflow")) / "index"


def cache_path(cache_dir: Path, root: Path) -> Path:
    """The cache file of one workspace root."""
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:20]
    return cache_dir / f"{root.name or 'root'}-{digest}.msgpack"


def load(cache_dir: Path, root: Path) -> dict[str, FileIndex]:
    """The cached FileIndex per absolute path; empty when missing, stale or unreadable (the two
    last are logged: the workspace is then indexed from scratch, which a user may notice)."""
    path = cache_path(cache_dir, root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("cannot read the index cache %s (%s); indexing %s from scratch", path, exc, root)
        return {}
    try:
        cached = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("the index cache %s is corrupt (%s, %d bytes); indexing %s from scratch and "
                    "rewriting it", path, exc, len(data), root)
        return {}
    if cached.format != FORMAT or cached.root != str(root):
        log.info("the index cache %s is from another version (format %d, now %d); rebuilding it",
                 path, cached.format, FORMAT)
        return {}
    return {fi.path: fi for fi in cached.files}


def save(cache_dir: Path, root: Path, files: list[FileIndex]) -> None:
    """Write the cache atomically (a crash never leaves half a file)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_path(cache_dir, root)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(_encoder.encode(_CacheFile(format=FORMAT, root=str(root), files=files)))
    os.replace(tmp, target)
