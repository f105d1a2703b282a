"""Model presets: code models users run, as data (`presets.toml`), sized by the planner.

A preset names a Hugging Face repository, the GGUF file of each quant, a role (completion,
chat or both), a prompt format and the model's geometry. Geometry makes a `Profile`, so the
planner can say which quant fits before anything is downloaded. Users may add or override
presets in `presets.toml` beside their `codeflow.toml` (issue 15).
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any, Literal

import msgspec
import platformdirs

from codeflow.quant import memory
from codeflow.quant.errors import PresetError
from codeflow.quant.planner import Candidate
from codeflow.quant.profiles import QUANTS, Profile

Role = Literal["completion", "chat", "both"]
PRESETS_FILE = "presets.toml"


class PromptFormat(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """FIM markers and chat template family a preset's GGUF is expected to carry."""

    fim_prefix: str = ""
    fim_suffix: str = ""
    fim_middle: str = ""
    file_sep: str = ""
    # The chat template family ("chatml", "deepseek"); empty for a base model.
    chat: str = ""
    # Where the format comes from, and whether it was checked against a real GGUF.
    source: str = ""

    @property
    def fim(self) -> bool:
        """Whether the format has fill-in-the-middle markers."""
        return bool(self.fim_prefix and self.fim_suffix and self.fim_middle)


class _Geometry(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_ff: int
    n_vocab: int
    n_ctx_train: int
    tied_embeddings: bool = False
    loop: int = 1
    rope_scaling: str | None = None


class _PresetData(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: str
    display: str
    role: Role
    rank: int
    repo: str
    prompt: str
    geometry: _Geometry
    file: str = ""
    quants: tuple[str, ...] = ()
    checked: str = ""
    remote: str = ""


class _PresetFile(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    prompt: dict[str, PromptFormat] = {}
    preset: tuple[_PresetData, ...] = ()


class Preset(msgspec.Struct, kw_only=True, frozen=True):
    """One downloadable (or remote-only) model."""

    name: str
    display: str
    role: Role
    # Higher is better: the recommendation takes the best-ranked preset that fits.
    rank: int
    repo: str
    # GGUF file name with `{quant}` in it; empty for a remote-only preset.
    file: str
    quants: tuple[str, ...]
    prompt: PromptFormat
    profile: Profile
    # "names" when the repo and file names were seen in public pages; empty when unverified.
    checked: str = ""
    # Why this model runs only on a remote server; empty when llama.cpp can run it.
    remote: str = ""

    def serves(self, role: str) -> bool:
        """Whether this preset can fill `role` ("completion" or "chat")."""
        return self.role in (role, "both")

    def file_for(self, quant: str) -> str:
        """The GGUF file name of `quant` in the repository."""
        q = quant.upper()
        if q not in self.quants:
            raise PresetError(f"{self.name} has no {quant} file; it has {', '.join(self.quants) or 'none'}")
        return self.file.format(quant=q)

    def size_bytes(self, quant: str) -> int:
        """The file size the planner expects for `quant` (parameters x effective bits per weight)."""
        return int(self.profile.params() * QUANTS[quant.upper()].bpw / 8)

    def candidates(self, quants: tuple[str, ...] | None = None) -> list[Candidate]:
        """Planner candidates for the preset's quants (or the given subset)."""
        wanted = [q.upper() for q in (quants or self.quants)]
        return [
            Candidate(geometry=memory.geometry_from_profile(self.profile, QUANTS[q]), quant=q,
                      bpw=QUANTS[q].bpw, profile=self.name, display=self.display)
            for q in self.quants if q in wanted
        ]


def builtin_presets_text() -> bytes:
    """The presets shipped in the package."""
    return importlib.resources.files("codeflow.quant").joinpath(PRESETS_FILE).read_bytes()


def user_presets_path() -> Path:
    """Where a user adds or overrides presets: beside the user `codeflow.toml`."""
    return Path(platformdirs.user_config_dir("codeflow")) / PRESETS_FILE


def _decode(raw: bytes, origin: str) -> _PresetFile:
    try:
        return msgspec.toml.decode(raw, type=_PresetFile)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PresetError(f"cannot read presets from {origin}: {exc}") from exc


def _build(data: _PresetData, prompts: dict[str, PromptFormat], origin: str) -> Preset:
    if data.prompt not in prompts:
        raise PresetError(f"preset {data.name} in {origin} names unknown prompt format {data.prompt!r}")
    unknown = [q for q in data.quants if q.upper() not in QUANTS]
    if unknown:
        raise PresetError(f"preset {data.name} in {origin} has unknown quant types {unknown}; known: {', '.join(QUANTS)}")
    if not data.remote and (not data.file or "{quant}" not in data.file or not data.quants):
        raise PresetError(f"preset {data.name} in {origin} needs `file` with {{quant}} and `quants`, or `remote`")
    geom: dict[str, Any] = msgspec.structs.asdict(data.geometry)
    profile = Profile(name=data.name, display=data.display, hf_repo=data.repo, **geom)
    return Preset(
        name=data.name, display=data.display, role=data.role, rank=data.rank, repo=data.repo,
        file=data.file, quants=tuple(q.upper() for q in data.quants), prompt=prompts[data.prompt],
        profile=profile, checked=data.checked, remote=data.remote,
    )


def load_presets(user_file: Path | None = None) -> dict[str, Preset]:
    """Built-in presets, then the user's file (same schema) adding or replacing by name."""
    files = [(builtin_presets_text(), "the built-in presets")]
    user_file = user_presets_path() if user_file is None else user_file
    if user_file.is_file():
        files.append((user_file.read_bytes(), str(user_file)))
    prompts: dict[str, PromptFormat] = {}
    out: dict[str, Preset] = {}
    for raw, origin in files:
        parsed = _decode(raw, origin)
        prompts.update(parsed.prompt)
        for data in parsed.preset:
            out[data.name] = _build(data, prompts, origin)
    return out


def get_preset(presets: dict[str, Preset], name: str) -> Preset:
    """The preset called `name`, or an error that lists the known ones."""
    try:
        return presets[name]
    except KeyError:
        raise PresetError(f"unknown preset {name!r}; known: {', '.join(sorted(presets))}") from None


def check_quant(preset: Preset, quant: str) -> str:
    """`quant` upper-cased, when the preset has a local file for it."""
    if preset.remote:
        raise PresetError(f"{preset.name} is remote-only ({preset.remote}); see docs/remote.md")
    preset.file_for(quant)
    return quant.upper()
