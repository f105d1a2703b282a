"""Codeflow's one settings Struct, and the layering that builds it.

Layers, lowest first: defaults, `codeflow.toml` in the user config dir, `codeflow.toml` in the
workspace, LSP `initializationOptions`, then each `workspace/didChangeConfiguration`. Every layer
goes through `apply_layer`, which applies one leaf at a time so that a bad value is rejected on its
own, with its key named, while the previous value stays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec
import platformdirs

CONFIG_FILE = "codeflow.toml"


class _Base(msgspec.Struct, kw_only=True, frozen=True, rename="camel", forbid_unknown_fields=True):
    pass


class ModelSettings(_Base):
    """Which GGUF files run, and how llama.cpp loads them."""

    # A GGUF path; empty means the embedded default (Gemma 3 270M Q4_K_M).
    path: str = ""
    # The instruct model for code actions and hovers; "default" is SmolLM2-135M-Instruct.
    chat_path: str = "default"
    n_ctx: int = 4096
    # -1 lets the planner decide; 0 keeps everything on the CPU.
    n_gpu_layers: int = -1
    n_threads: int = 0
    kv_type: Literal["f16", "q8_0", "q4_0"] = "f16"
    # Run llama.cpp inside the server process instead of a worker process (debugging only).
    in_process: bool = False
    # Watchdogs on the worker process: one that sends no first token (prompt evaluation
    # included) or no next token within these is killed and replaced, and the user is told
    # (issue 12: a stopped worker hung requests for 90 s+).
    first_token_timeout_s: float = 60.0
    stall_timeout_s: float = 15.0


class CompletionSettings(_Base):
    """Inline completion behaviour."""

    enabled: bool = True
    max_tokens: int = 64
    max_tokens_invoked: int = 256
    # Tokens generated in the background after the first line is shown, into the cache.
    background_tokens: int = 128
    temperature: float = 0.0
    debounce_ms: int = 75
    disabled_languages: tuple[str, ...] = ()
    # How many recent documents keep a saved llama.cpp state so a switch stays warm.
    warm_documents: int = 4
    # The most lines an as-you-type (automatic) block shows; invoked requests are not limited.
    max_lines_automatic: int = 8


class ContextSettings(_Base):
    """The cross-file context engine and the prompt budget."""

    enabled: bool = True
    budget_tokens: int = 1024
    prefix_tokens: int = 1024
    suffix_tokens: int = 256
    max_file_bytes: int = 1_000_000
    exclude: tuple[str, ...] = ()
    secret_globs: tuple[str, ...] = ()
    cache: bool = True


class RemoteSettings(_Base):
    """An OpenAI-compatible endpoint (vLLM, llama-server, TGI)."""

    url: str = ""
    model: str = ""
    chat_model: str = ""
    # The name of the environment variable that holds the API key; never the key itself.
    api_key_env: str = ""
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    # One overall limit per request, retries and back-off included (issue 12): a hung endpoint
    # cost 91 s (30 s read timeout x 3 tries) without it.
    completion_deadline_s: float = 10.0
    # Code actions and explanations write longer answers.
    action_deadline_s: float = 60.0
    retries: int = 2
    verify_tls: bool = True
    # The remote model's FIM markers as text; empty means plain prefix completion.
    fim_prefix: str = ""
    fim_suffix: str = ""
    fim_middle: str = ""


class HoverSettings(_Base):
    """"Explain this function" hovers."""

    enabled: bool = True
    wait_ms: int = 300
    # Tokens the chat model may spend on one explanation.
    explain_max_tokens: int = 256


class Settings(_Base):
    """Everything a user can set."""

    backend: Literal["auto", "local", "remote"] = "auto"
    model: ModelSettings = msgspec.field(default_factory=ModelSettings)
    completion: CompletionSettings = msgspec.field(default_factory=CompletionSettings)
    context: ContextSettings = msgspec.field(default_factory=ContextSettings)
    remote: RemoteSettings = msgspec.field(default_factory=RemoteSettings)
    hover: HoverSettings = msgspec.field(default_factory=HoverSettings)
    log_level: Literal["debug", "info", "warning", "error"] = "info"


class SettingError(msgspec.Struct, frozen=True):
    """One rejected leaf: its dotted key and why."""

    key: str
    reason: str

    def __str__(self) -> str:
        return f"invalid setting {self.key}: {self.reason}"


def _leaves(raw: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    for key, value in raw.items():
        path = (*prefix, str(key))
        if isinstance(value, dict) and value:
            out.extend(_leaves(value, path))
        else:
            out.append((path, value))
    return out


def _set_leaf(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = tree
    for key in path[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[path[-1]] = value


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _normalise(raw: dict[str, Any]) -> dict[str, Any]:
    """Accept snake_case keys (TOML, CLI) as well as camelCase (LSP clients)."""
    return {_camel(k): _normalise(v) if isinstance(v, dict) else v for k, v in raw.items()}


def apply_layer(current: Settings, raw: Any) -> tuple[Settings, list[SettingError]]:
    """Apply one layer of raw settings leaf by leaf; bad leaves are reported and skipped."""
    if raw is None:
        return current, []
    if not isinstance(raw, dict):
        return current, [SettingError("(root)", f"expected an object, got {type(raw).__name__}")]
    raw = raw.get("codeflow", raw) if isinstance(raw.get("codeflow"), dict) else raw
    tree = msgspec.to_builtins(current)
    errors: list[SettingError] = []
    for path, value in _leaves(_normalise(raw)):
        trial = msgspec.to_builtins(current)
        _set_leaf(trial, path, value)
        try:
            _refuse_pasted_key(msgspec.convert(trial, Settings))
        except msgspec.ValidationError as exc:
            errors.append(SettingError(".".join(path), str(exc)))
            continue
        _set_leaf(tree, path, value)
        current = msgspec.convert(tree, Settings)
    return current, errors


def _refuse_pasted_key(settings: Settings) -> None:
    """remote.apiKeyEnv names a variable; a key pasted there is refused (issue 11, section 3)."""
    from codeflow.quant.secrets import looks_like_key

    name = settings.remote.api_key_env
    if name and (not name.isidentifier() or looks_like_key(name)):
        # The message never holds the value: it is shown to the user and logged.
        raise msgspec.ValidationError("must be the name of an environment variable; this value looks"
                                      " like a key itself, so it is refused and not repeated here")


def config_files(workspace: Path | None) -> list[Path]:
    """The TOML files that apply, lowest priority first."""
    files = [Path(platformdirs.user_config_dir("codeflow")) / CONFIG_FILE]
    if workspace is not None:
        files.append(workspace / CONFIG_FILE)
    return [f for f in files if f.is_file()]


def load_toml(path: Path) -> tuple[dict[str, Any], list[SettingError]]:
    """Read one codeflow.toml; a broken file is one error, not an exception."""
    try:
        raw = msgspec.toml.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError) as exc:
        return {}, [SettingError(str(path), f"cannot read: {exc}")]
    if not isinstance(raw, dict):
        return {}, [SettingError(str(path), "expected a table")]
    return raw, []


def build(workspace: Path | None, *layers: Any) -> tuple[Settings, list[SettingError]]:
    """Defaults, then config files, then each given layer (initializationOptions, CLI flags)."""
    settings = Settings()
    errors: list[SettingError] = []
    for path in config_files(workspace):
        raw, errs = load_toml(path)
        errors += errs
        settings, errs = apply_layer(settings, raw)
        errors += errs
    for layer in layers:
        settings, errs = apply_layer(settings, layer)
        errors += errs
    return settings, errors
