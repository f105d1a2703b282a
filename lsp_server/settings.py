"""Codeflow's one settings Struct, and the layering that builds it.

Layers, lowest first: defaults, `codeflow.toml` in the user config dir, `codeflow.toml` in the
workspace, LSP `initializationOptions`, then each `workspace/didChangeConfiguration`. Every layer
goes through `apply_layer`, which applies one leaf at a time so that a bad value is rejected on its
own, with its key named, while the previous value stays.

The Structs are the one schema (issue 17, section 4): each leaf's bounds and description live in its
`Meta`, so `msgspec.convert` refuses an out-of-range value itself, and the VS Code extension's
`contributes.configuration` is generated from `msgspec.json.schema(Settings)`
(`vscode-client/scripts/gen_configuration.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import platformdirs
from msgspec import Meta

if TYPE_CHECKING:
    from codeflow.context.engine import EngineConfig

CONFIG_FILE = "codeflow.toml"


class _Base(msgspec.Struct, kw_only=True, frozen=True, rename="camel", forbid_unknown_fields=True):
    pass


class ModelSettings(_Base):
    """Which GGUF files run, and how llama.cpp loads them."""

    path: Annotated[str, Meta(description=(
        "The completion model: a GGUF file path. Empty uses the bundled default (Gemma 3 270M Q4_K_M)."
    ))] = ""
    chat_path: Annotated[str, Meta(description=(
        "The chat model for code actions and hovers: a GGUF path, or `default` for SmolLM2-135M-Instruct."
    ))] = "default"
    n_ctx: Annotated[int, Meta(ge=256, description="Context window of the local model, in tokens.")] = 4096
    n_gpu_layers: Annotated[int, Meta(ge=-1, description=(
        "Layers to offload to the GPU: -1 lets the planner decide, 0 keeps everything on the CPU."
    ))] = -1
    n_threads: Annotated[int, Meta(ge=0, description="CPU threads for llama.cpp; 0 picks automatically.")] = 0
    kv_type: Annotated[Literal["f16", "q8_0", "q4_0"], Meta(description="Type of the KV cache.")] = "f16"
    in_process: Annotated[bool, Meta(description=(
        "Run llama.cpp inside the server process instead of a worker process (debugging only)."
    ))] = False
    # Watchdogs on the worker process (issue 12: a stopped worker hung requests for 90 s+).
    first_token_timeout_s: Annotated[float, Meta(ge=1, description=(
        "A local model worker that sends no first token within this many seconds (prompt evaluation"
        " included) is restarted, and you are told."
    ))] = 60.0
    stall_timeout_s: Annotated[float, Meta(ge=1, description=(
        "A local model worker that sends no next token within this many seconds is restarted, and you"
        " are told."
    ))] = 15.0


class CompletionSettings(_Base):
    """Inline completion behaviour."""

    enabled: Annotated[bool, Meta(description="Show inline (ghost text) completions.")] = True
    max_tokens: Annotated[int, Meta(ge=1, description="Tokens generated for an automatic completion.")] = 64
    max_tokens_invoked: Annotated[int, Meta(ge=1, description=(
        "Tokens generated when a completion is explicitly requested."
    ))] = 256
    background_tokens: Annotated[int, Meta(ge=0, description=(
        "Tokens generated in the background after the first line is shown, into the cache."
    ))] = 128
    temperature: Annotated[float, Meta(ge=0, description="Sampling temperature; 0 is greedy.")] = 0.0
    debounce_ms: Annotated[int, Meta(ge=0, description=(
        "Wait this long after the last keystroke before generating."
    ))] = 75
    disabled_languages: Annotated[tuple[str, ...], Meta(description=(
        "Language ids (such as `markdown` or `plaintext`) with no completions."
    ))] = ()
    warm_documents: Annotated[int, Meta(ge=0, description=(
        "Recent documents that keep a saved llama.cpp state so a switch stays warm."
    ))] = 4
    max_lines_automatic: Annotated[int, Meta(ge=1, description=(
        "The most lines an automatic (as-you-type) block shows; an invoked completion is not limited."
    ))] = 8
    latency_budget_ms: Annotated[int, Meta(ge=0, description=(
        "An automatic completion's first line is due within this many milliseconds: its prompt is"
        " sized from the measured prompt speed of this machine and model, keeping the best-ranked"
        " context and the nearest lines. 0 chooses 1500 on a CPU and 300 when the model runs on a"
        " GPU. Invoked completions always use the full context budget."
    ))] = 0


class ContextSettings(_Base):
    """The cross-file context engine and the prompt budget."""

    enabled: Annotated[bool, Meta(description=(
        "Add cross-file context (definitions, related files) to the prompt."
    ))] = True
    budget_tokens: Annotated[int, Meta(ge=0, description="Token budget for cross-file context.")] = 1024
    prefix_tokens: Annotated[int, Meta(ge=0, description="Tokens of the current file before the cursor.")] = 1024
    suffix_tokens: Annotated[int, Meta(ge=0, description="Tokens of the current file after the cursor.")] = 256
    max_file_bytes: Annotated[int, Meta(ge=0, description=(
        "Files larger than this (in bytes) are not indexed, read or completed."
    ))] = 1_000_000
    exclude: Annotated[tuple[str, ...], Meta(description="Gitignore-style globs the indexer skips.")] = ()
    secret_globs: Annotated[tuple[str, ...], Meta(description=(
        "Extra globs for files that never go into a prompt (on top of the built-in secret patterns)."
    ))] = ()
    cache: Annotated[bool, Meta(description="Cache the workspace index on disk.")] = True

    def engine_config(self, use_cache: bool = True) -> EngineConfig:
        """The context engine's configuration, the one place it is built from settings;
        `use_cache=False` overrides `cache` (`codeflow context --no-cache`)."""
        from codeflow.context.engine import EngineConfig  # loads tree-sitter: only when indexing

        return EngineConfig(exclude=self.exclude, secret_globs=self.secret_globs,
                            max_file_bytes=self.max_file_bytes, use_cache=self.cache and use_cache)


class RemoteSettings(_Base):
    """An OpenAI-compatible endpoint (vLLM, llama-server, TGI)."""

    url: Annotated[str, Meta(description=(
        "Base URL of an OpenAI-compatible server (vLLM, llama-server, TGI), for example"
        " `http://localhost:8000/v1`."
    ))] = ""
    model: Annotated[str, Meta(description="Model name for completions on the remote server.")] = ""
    chat_model: Annotated[str, Meta(description=(
        "Model name for code actions and hovers on the remote server."
    ))] = ""
    # Never the key itself: `_refuse_pasted_key` refuses a value that looks like one.
    api_key_env: Annotated[str, Meta(description=(
        "Name of the environment variable that holds the API key (never the key itself)."
    ))] = ""
    connect_timeout_s: Annotated[float, Meta(ge=0, description="Connect timeout, in seconds.")] = 5.0
    read_timeout_s: Annotated[float, Meta(ge=0, description="Read timeout, in seconds.")] = 30.0
    # One overall limit per request, retries and back-off included (issue 12): a hung endpoint
    # cost 91 s (30 s read timeout x 3 tries) without it.
    completion_deadline_s: Annotated[float, Meta(ge=0, description=(
        "Overall limit for one completion request, retries included, in seconds."
    ))] = 10.0
    # Code actions and explanations write longer answers.
    action_deadline_s: Annotated[float, Meta(ge=0, description=(
        "Overall limit for one code action or explanation, retries included, in seconds."
    ))] = 60.0
    retries: Annotated[int, Meta(ge=0, description="Retries for a failed request.")] = 2
    verify_tls: Annotated[bool, Meta(description="Verify the server's TLS certificate.")] = True
    fim_prefix: Annotated[str, Meta(description=(
        "The remote model's fill-in-the-middle prefix marker, as text (such as `<|fim_prefix|>`); empty"
        " means plain prefix completion."
    ))] = ""
    fim_suffix: Annotated[str, Meta(description=(
        "The remote model's fill-in-the-middle suffix marker, as text."
    ))] = ""
    fim_middle: Annotated[str, Meta(description=(
        "The remote model's fill-in-the-middle middle marker, as text."
    ))] = ""


class HoverSettings(_Base):
    """"Explain this function" hovers."""

    enabled: Annotated[bool, Meta(description="Explain the function under the mouse in hovers.")] = True
    wait_ms: Annotated[int, Meta(ge=0, description=(
        "How long a hover waits for the explanation before showing what it has."
    ))] = 300
    explain_max_tokens: Annotated[int, Meta(ge=1, description=(
        "Tokens the chat model may spend on one explanation."
    ))] = 256


class Settings(_Base):
    """Everything a user can set."""

    backend: Annotated[Literal["auto", "local", "remote"], Meta(description=(
        "Where the model runs: a local GGUF through llama.cpp, a remote OpenAI-compatible server, or"
        " auto (remote when `codeflow.remote.url` is set and reachable, else local)."
    ))] = "auto"
    model: ModelSettings = msgspec.field(default_factory=ModelSettings)
    completion: CompletionSettings = msgspec.field(default_factory=CompletionSettings)
    context: ContextSettings = msgspec.field(default_factory=ContextSettings)
    remote: RemoteSettings = msgspec.field(default_factory=RemoteSettings)
    hover: HoverSettings = msgspec.field(default_factory=HoverSettings)
    log_level: Annotated[Literal["debug", "info", "warning", "error"], Meta(description=(
        "Server log level (shown in the Codeflow output channel)."
    ))] = "info"


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
