"""Reading a file the editor has not opened: only a regular file inside a workspace root that the
ignore and secret rules admit (issue 11 §5).

A request may name any URI. Reading it as it comes put `/etc/passwd` into a prompt, froze the
server on a FIFO, and grew memory without bound on `/dev/zero`. So the path is resolved first
(symlinks included), checked against the roots and the rules, and opened non-blocking, and the
descriptor itself must be a regular file before a byte is read.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from codeflow.context.errors import UnreadableFileError
from codeflow.context.walk import SNIFF_BYTES, FileFilter

READ_CHUNK = 1 << 20


def filter_for(path: Path, filters: Sequence[FileFilter]) -> FileFilter | None:
    """The filter of the innermost root that holds `path` (already resolved), or None."""
    best = None
    for flt in filters:
        if path == flt.root or flt.root in path.parents:
            if best is None or len(flt.root.parts) > len(best.root.parts):
                best = flt
    return best


def read_closed_file(path: Path, filters: Sequence[FileFilter], max_bytes: int) -> str:
    """The text of a file that is not open in the editor; raises UnreadableFileError with the
    reason when the server must not read it."""
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop
        raise UnreadableFileError(f"cannot resolve {path}: {exc}") from exc
    flt = filter_for(real, filters)
    if flt is None:
        raise UnreadableFileError(f"{path} is outside the workspace folders; open it in the editor to use it")
    named = filter_for(path, filters)
    if flt.ignored(real) or (named is not None and path != real and named.ignored(path)):
        raise UnreadableFileError(f"{path} is excluded by the ignore or secret rules")
    return _read_regular(real, max_bytes)


def _read_regular(path: Path, max_bytes: int) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFileError(f"{path} is not a regular file")
        if st.st_size > max_bytes:
            raise UnreadableFileError(f"{path} has {st.st_size} bytes, over the {max_bytes} limit")
        data = _read_at_most(fd, max_bytes)
    finally:
        os.close(fd)
    if b"\0" in data[:SNIFF_BYTES]:
        raise UnreadableFileError(f"{path} looks binary (NUL byte in the first {SNIFF_BYTES} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableFileError(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc


def _read_at_most(fd: int, max_bytes: int) -> bytes:
    """Read to the end, but never more than `max_bytes` (a file may grow after fstat)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = os.read(fd, min(READ_CHUNK, max_bytes + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise UnreadableFileError(f"file grew past the {max_bytes}-byte limit while being read")
