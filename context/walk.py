"""Which files of a workspace may be indexed: ignore files, excludes, secrets, size and binaries."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pathspec

from codeflow.context.errors import UnreadableFileError
from codeflow.context.languages import language_of

IGNORE_FILES = (".gitignore", ".ignore")
# Vendored, generated and tool directories: never source the user is writing.
SKIP_DIRS = frozenset({
    ".git", ".hg", ".svn", "node_modules", "bower_components", "vendor", "third_party",
    "__pycache__", ".venv", "venv", ".tox", ".nox", ".mypy_cache", ".pytest_cache", ".ruff_cache",
    ".eggs", "site-packages", "dist", "build", "target", ".idea", ".vscode", ".cache",
})
# Files whose contents must never reach a prompt.
SECRET_GLOBS = (
    ".env", ".env.*", "*.env", ".envrc", "*.pem", "*.key", "*.crt", "*.p12", "*.pfx", "*.jks",
    "*.keystore", "*.kdbx", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*", "*.ppk",
    ".netrc", ".pgpass", ".npmrc", ".pypirc", ".git-credentials", ".htpasswd",
    "credentials", "credentials.json", "credentials.yml", "credentials.yaml",
    ".aws/**", ".azure/**", ".config/gcloud/**", "application_default_credentials.json",
    "service-account*.json", "*-sa-key.json", ".docker/config.json", ".kube/config", "kubeconfig",
    "*.tfstate", "*.tfstate.*", "*.tfvars", "secrets.yml", "secrets.yaml", "secrets.json",
    "*.secret", "*.secrets",
)
SNIFF_BYTES = 8192


class FileFilter:
    """Decides whether a path under one root may be indexed; reads ignore files once per dir."""

    def __init__(self, root: Path, exclude: tuple[str, ...] = (), secret_globs: tuple[str, ...] = (),
                 max_file_bytes: int = 1_000_000) -> None:
        self.root = root
        # Links are judged by where they lead: the resolved root is what targets are compared to.
        self.real_root = root.resolve()
        self.max_file_bytes = max_file_bytes
        self.exclude = pathspec.GitIgnoreSpec.from_lines(exclude)
        self.secrets = pathspec.GitIgnoreSpec.from_lines((*SECRET_GLOBS, *secret_globs))
        self._specs: dict[Path, pathspec.GitIgnoreSpec | None] = {}

    def _spec(self, directory: Path) -> pathspec.GitIgnoreSpec | None:
        if directory not in self._specs:
            lines: list[str] = []
            for name in IGNORE_FILES:
                try:
                    lines += (directory / name).read_text("utf-8", "replace").splitlines()
                except OSError:
                    continue
            self._specs[directory] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._specs[directory]

    def forget_ignores(self, directory: Path) -> None:
        """Drop the cached ignore rules of a directory (after its .gitignore changed)."""
        self._specs.pop(directory, None)

    def is_secret(self, path: Path) -> bool:
        """Whether the path matches a secret pattern (built-in or user-added)."""
        return self.secrets.match_file(self._rel(path))

    def _rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return path.name

    def ignored(self, path: Path, is_dir: bool = False) -> bool:
        """Whether an ignore file, an exclude, a skip dir or a secret pattern rules the path out,
        for the path as named and for the real path it resolves to: a link named `local_keys.py`
        into a gitignored `private/`, or out of the root, is ruled out (issue 11, section 3)."""
        if self._ignored_as_named(path, is_dir):
            return True
        real = Path(os.path.realpath(path))
        if real == path:
            return False
        try:
            inside = real.relative_to(self.real_root)
        except ValueError:
            return True
        return self._ignored_as_named(self.root / inside, is_dir)

    def _ignored_as_named(self, path: Path, is_dir: bool) -> bool:
        rel = self._rel(path)
        if rel.startswith(".."):
            return True
        parts = rel.split("/")
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in parts[:-1]):
            return True
        if is_dir and (parts[-1] in SKIP_DIRS or parts[-1].endswith(".egg-info")):
            return True
        probe = rel + "/" if is_dir else rel
        if self.exclude.match_file(probe) or (not is_dir and self.secrets.match_file(rel)):
            return True
        directory = path.parent
        while True:
            spec = self._spec(directory)
            if spec is not None:
                sub = path.relative_to(directory).as_posix() + ("/" if is_dir else "")
                if spec.match_file(sub):
                    return True
            if directory == self.root or directory.parent == directory:
                return False
            directory = directory.parent

    def admissible(self, path: Path) -> bool:
        """Whether a file may be indexed and shown: a supported language and not ruled out."""
        return language_of(path) is not None and not self.ignored(path)


def walk(flt: FileFilter) -> Iterator[Path]:
    """Every admissible source file under the filter's root, pruning ignored directories early."""
    for dirpath, dirnames, filenames in os.walk(flt.root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not flt.ignored(here / d, is_dir=True))
        for name in sorted(filenames):
            path = here / name
            if language_of(name) is not None and is_regular(path) and not flt.ignored(path):
                yield path


def is_regular(path: Path) -> bool:
    """Whether a path is a regular file: opening a FIFO or device would block or never end."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def read_source(path: Path, max_bytes: int) -> tuple[bytes, os.stat_result]:
    """A file's bytes and stat; raises UnreadableFileError for huge, binary or non-regular files."""
    try:
        # O_NONBLOCK: a FIFO swapped in after the walk must not block open() (issue 12); the
        # fstat of the opened descriptor then rules it out without a race.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise UnreadableFileError(f"{path} is not a regular file (mode {stat.filemode(st.st_mode)})")
            if st.st_size > max_bytes:
                raise UnreadableFileError(f"{path} has {st.st_size} bytes, over the {max_bytes} limit")
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise UnreadableFileError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if b"\0" in data[:SNIFF_BYTES]:
        raise UnreadableFileError(f"{path} looks binary (NUL byte in the first {SNIFF_BYTES} bytes)")
    return data, st
