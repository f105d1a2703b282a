"""Download preset GGUFs through `huggingface_hub`, check them, find and remove them.

Files land in the Hugging Face cache (`HF_HOME`, `HF_HUB_CACHE`), so other tools share them.
`HF_ENDPOINT` (a mirror) and `HF_TOKEN` (gated repos) are honoured by `huggingface_hub`.
huggingface_hub resumes a cut download itself (a Range request from the bytes it has) and checks
the size; it does not hash plain HTTP downloads, so `pull` compares the file's sha256 with the
hub's metadata (the X-Linked-Etag of an LFS file is its sha256) and removes a file that differs.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import msgspec

from codeflow.quant.errors import GGUFError, HubError
from codeflow.quant.presets import Preset, check_quant

Progress = Callable[[int, int], None]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class PullResult(msgspec.Struct, kw_only=True, frozen=True):
    """What `codeflow model pull` fetched."""

    preset: str
    quant: str
    repo: str
    file: str
    path: str
    size_bytes: int
    sha256: str
    warnings: tuple[str, ...] = ()


def endpoint() -> str:
    """The hub `huggingface_hub` talks to (HF_ENDPOINT, or its default)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def _unreachable(exc: BaseException) -> HubError:
    return HubError(
        f"cannot reach the model hub at {endpoint()} (the host comes from HF_ENDPOINT, or the "
        f"default when it is unset): {exc.__cause__ or exc}; check the network or proxy, or set "
        "HF_ENDPOINT to a reachable mirror"
    )


def _hub_error(exc: Exception, preset: Preset, file: str) -> HubError:
    """One clear message for whatever the download raised."""
    import httpx2
    from huggingface_hub import errors

    if isinstance(exc, errors.OfflineModeIsEnabled):
        return HubError(f"HF_HUB_OFFLINE is set, and {file} is not in the cache; unset it to download")
    if isinstance(exc, errors.GatedRepoError):
        return HubError(f"{preset.repo} is gated: accept its terms on the hub and set HF_TOKEN")
    if isinstance(exc, errors.RepositoryNotFoundError):
        return HubError(f"repository {preset.repo} not found at {endpoint()} (private repos need HF_TOKEN)")
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return HubError(f"{preset.repo} has no file {file} at {endpoint()}")
    # Checked after the hub's own answers: LocalEntryNotFoundError is what a refused HEAD becomes.
    if isinstance(exc, (httpx2.TransportError, errors.LocalEntryNotFoundError)):
        return _unreachable(exc)
    return HubError(f"downloading {file} from {preset.repo} at {endpoint()} failed: {exc}")


def _progress_bar(progress: Progress):  # noqa: ANN202 - a tqdm subclass made at run time
    from huggingface_hub.utils import tqdm

    class _Reporting(tqdm):
        def __init__(self, *args: object, **kwargs: object) -> None:
            # Count here: a disabled bar (no TTY, HF_HUB_DISABLE_PROGRESS_BARS) keeps no count.
            self.done = int(kwargs.get("initial") or 0)  # type: ignore[call-overload]
            self.size = int(kwargs.get("total") or 0)  # type: ignore[call-overload]
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            self.done += int(n or 0)
            progress(self.done, self.size)
            return super().update(n)

    return _Reporting


def sha256_of(path: Path) -> str:
    """The file's sha256, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _discard(pointer: Path) -> None:
    """Remove a cached file: the blob and the snapshot link that points at it."""
    blob = pointer.resolve()
    pointer.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)


def pull(preset: Preset, quant: str, progress: Progress | None = None) -> PullResult:
    """Download one quant of a preset into the HF cache, verify its sha256 and its format."""
    from huggingface_hub import hf_hub_download

    quant = check_quant(preset, quant)
    file = preset.file_for(quant)
    try:
        path = Path(hf_hub_download(preset.repo, file, tqdm_class=_progress_bar(progress) if progress else None))
    except Exception as exc:  # noqa: BLE001 - every failure becomes one typed, explained error
        raise _hub_error(exc, preset, file) from exc
    got = sha256_of(path)
    # The cache names each blob after the etag the hub gave for it (blobs/<etag>).
    want = path.resolve().name.lower()
    warnings = []
    if _SHA256.match(want) and got != want:
        _discard(path)
        raise HubError(f"{file} from {preset.repo}: sha256 {got} does not match the hub's {want}; "
                       "the file was removed, run the pull again")
    if not _SHA256.match(want):
        warnings.append(f"the hub gave no sha256 for {file} (etag {want!r}); only its size was checked")
    warnings += check_format(preset, path)
    return PullResult(preset=preset.name, quant=quant, repo=preset.repo, file=file, path=str(path),
                      size_bytes=path.stat().st_size, sha256=got, warnings=tuple(warnings))


def check_format(preset: Preset, path: Path) -> list[str]:
    """Differences between the preset's prompt format and what the GGUF itself carries."""
    from codeflow.quant.gguf_info import read_gguf

    try:
        info = read_gguf(path)
    except GGUFError as exc:
        return [f"{path.name} is not a readable GGUF: {exc}"]
    notes = []
    if preset.prompt.fim and (info.fim is None or info.fim.prefix != preset.prompt.fim_prefix):
        found = info.fim.prefix if info.fim else "none"
        notes.append(f"{path.name}: expected FIM marker {preset.prompt.fim_prefix}, the GGUF has {found}")
    if preset.prompt.chat and not info.chat_template:
        notes.append(f"{path.name}: expected a {preset.prompt.chat} chat template, the GGUF has none")
    return notes


def cached_path(preset: Preset, quant: str) -> Path | None:
    """The downloaded file of one quant, or None; never touches the network."""
    from huggingface_hub import try_to_load_from_cache

    if preset.remote:
        return None
    found = try_to_load_from_cache(preset.repo, preset.file_for(quant))
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def pulled(preset: Preset) -> dict[str, Path]:
    """The quants of a preset that are in the cache, with their paths."""
    return {q: p for q in preset.quants if (p := cached_path(preset, q)) is not None}


def remove(preset: Preset, quant: str | None = None) -> tuple[list[Path], int]:
    """Delete the cached files of one quant (or all) of a preset; the paths and bytes freed."""
    targets = pulled(preset)
    if quant is not None:
        quant = check_quant(preset, quant)
        targets = {quant: targets[quant]} if quant in targets else {}
    if not targets:
        raise HubError(f"{preset.name}{' ' + quant if quant else ''} is not downloaded; nothing to remove")
    freed = 0
    for path in targets.values():
        freed += path.resolve().stat().st_size
        repo_dir = path.parents[2]
        _discard(path)
        if not any(repo_dir.joinpath("blobs").iterdir()):
            # The last file of the repo: drop its refs and snapshots too.
            shutil.rmtree(repo_dir, ignore_errors=True)
    return list(targets.values()), freed
