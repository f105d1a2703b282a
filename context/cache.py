"""The persistent index cache: one msgpack file per workspace root, entries keyed by path, mtime and
size, so that a restart re-parses only the files that changed."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import msgspec
import platformdirs

from codeflow.context.symbols import FileIndex

# Bump when extraction changes what a FileIndex holds, so that stale caches are ignored.
# 6: entries encoded one by one (issue 16 §3).
FORMAT = 6
log = logging.getLogger(__name__)


class _Header(msgspec.Struct, kw_only=True):
    format: int
    root: str


class _CacheFile(msgspec.Struct, kw_only=True):
    format: int
    root: str
    # Path -> that file's encoded FileIndex. A warm start decodes one entry at a time: decoding
    # the whole cache beside the index built from it took 237 MB per 10k files, against 80 for
    # a cold index (issue 16 §3).
    files: dict[str, msgspec.Raw]


_header = msgspec.msgpack.Decoder(_Header)
_decoder = msgspec.msgpack.Decoder(_CacheFile)
_entry = msgspec.msgpack.Decoder(FileIndex)
_encoder = msgspec.msgpack.Encoder()


class Cached(Mapping[str, FileIndex]):
    """The cached FileIndex per absolute path, each decoded when asked for; an entry that does
    not decode counts as absent (logged), and that file is parsed again."""

    def __init__(self, entries: dict[str, msgspec.Raw]) -> None:
        self._entries = entries

    def __getitem__(self, path: str) -> FileIndex:
        raw = self._entries[path]
        try:
            return _entry.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            log.warning("the index cache entry of %s is corrupt (%s); parsing the file again", path, exc)
            raise KeyError(path) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


def default_dir() -> Path:
    """The user cache dir for the index."""
    return Path(platformdirs.user_cache_dir("codeflow")) / "index"


def cache_path(cache_dir: Path, root: Path) -> Path:
    """The cache file of one workspace root."""
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:20]
    return cache_dir / f"{root.name or 'root'}-{digest}.msgpack"


def load(cache_dir: Path, root: Path) -> Mapping[str, FileIndex]:
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
        head = _header.decode(data)
        if head.format != FORMAT or head.root != str(root):
            log.info("the index cache %s is from another version (format %d, now %d); rebuilding it",
                     path, head.format, FORMAT)
            return {}
        cached = _decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("the index cache %s is corrupt (%s, %d bytes); indexing %s from scratch and "
                    "rewriting it", path, exc, len(data), root)
        return {}
    return Cached(cached.files)


def save(cache_dir: Path, root: Path, files: list[FileIndex]) -> None:
    """Write the cache atomically (a crash never leaves half a file)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_path(cache_dir, root)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")
    entries = {fi.path: msgspec.Raw(_encoder.encode(fi)) for fi in files}
    tmp.write_bytes(_encoder.encode(_CacheFile(format=FORMAT, root=str(root), files=entries)))
    os.replace(tmp, target)
