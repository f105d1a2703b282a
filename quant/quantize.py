"""Quantize a GGUF file with llama.cpp's own quantizer (`llama_model_quantize`).

The output is written to `OUT.part` beside OUT and renamed when llama.cpp reports success, so a
failed or interrupted run never leaves a half-written model under the requested name.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Callable
from pathlib import Path

from codeflow.quant.errors import GGUFError, QuantizeError
from codeflow.quant.gguf_info import GGUFInfo, read_gguf

Progress = Callable[[int, int, str], None]
# "[  12/ 201]  blk.1.attn_q.weight  - [...]": the line llama-quant.cpp logs per tensor.
_TENSOR_LINE = re.compile(r"\[\s*(\d+)/\s*(\d+)\]\s+(\S+)")
_GGML_LOG_ERROR = 3


def _llama() -> object:
    try:
        import llama_cpp
    except Exception as exc:  # noqa: BLE001 - any import failure means no quantizer
        raise QuantizeError(f"llama_cpp is not importable ({exc}); install llama-cpp-python") from exc
    return llama_cpp


def ftype_names() -> list[str]:
    """The quant type names llama.cpp accepts (Q4_K_M, Q8_0, F16, ...)."""
    llama_cpp = _llama()
    names = [n.removeprefix("LLAMA_FTYPE_MOSTLY_") for n in dir(llama_cpp)
             if n.startswith("LLAMA_FTYPE_MOSTLY_")]
    return ["F32", *sorted(names)]


def ftype_of(name: str) -> int:
    """llama.cpp's `llama_ftype` value for a type name such as "Q4_K_M" (case-insensitive)."""
    llama_cpp = _llama()
    key = name.strip().upper()
    attr = "LLAMA_FTYPE_ALL_F32" if key == "F32" else f"LLAMA_FTYPE_MOSTLY_{key}"
    value = getattr(llama_cpp, attr, None)
    if not isinstance(value, int) or not re.fullmatch(r"[A-Z0-9_]+", key):
        raise QuantizeError(f"unknown quant type {name!r}; known: {', '.join(ftype_names())}")
    return value


class _LogCapture:
    """Routes llama.cpp's log lines to a progress callback while a quantization runs."""

    def __init__(self, llama_cpp: object, progress: Progress | None) -> None:
        self.llama_cpp, self.progress, self.errors = llama_cpp, progress, []
        self.callback = llama_cpp.llama_log_callback(self._on_log)  # type: ignore[attr-defined]

    def _on_log(self, level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", errors="replace")
        if level == _GGML_LOG_ERROR:
            self.errors.append(line.strip())
        match = _TENSOR_LINE.search(line)
        if match and self.progress is not None:
            self.progress(int(match.group(1)), int(match.group(2)), match.group(3))

    def __enter__(self) -> _LogCapture:
        self.llama_cpp.llama_log_set(self.callback, ctypes.c_void_p(0))  # type: ignore[attr-defined]
        return self

    def __exit__(self, *_exc: object) -> None:
        from llama_cpp import _logger  # llama-cpp-python's own callback, restored

        self.llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))  # type: ignore[attr-defined]


def _check_paths(src: Path, dst: Path) -> GGUFInfo:
    if not src.is_file():
        raise QuantizeError(f"input {src} does not exist or is not a file")
    if dst.exists():
        raise QuantizeError(f"output {dst} already exists; refusing to overwrite it")
    if not dst.parent.is_dir():
        raise QuantizeError(f"output directory {dst.parent} does not exist")
    if src.resolve() == dst.resolve():
        raise QuantizeError("input and output are the same file")
    try:
        return read_gguf(src)
    except GGUFError as exc:
        raise QuantizeError(f"input is not a usable GGUF model: {exc}") from exc


def quantize(
    src: Path, dst: Path, qtype: str, *, threads: int = 0, allow_requantize: bool = False,
    progress: Progress | None = None,
) -> GGUFInfo:
    """Quantize `src` to `dst` as `qtype`; returns the new file's info. Never overwrites."""
    src, dst = Path(src), Path(dst)
    ftype = ftype_of(qtype)
    info = _check_paths(src, dst)
    quantized = {t.type for t in info.tensors if t.type not in ("F32", "F16", "BF16")}
    if quantized and not allow_requantize:
        raise QuantizeError(
            f"{src.name} is already quantized ({info.file_type}: {', '.join(sorted(quantized))}); "
            "requantizing loses quality, pass --allow-requantize to do it anyway"
        )
    llama_cpp = _llama()
    params = llama_cpp.llama_model_quantize_default_params()  # type: ignore[attr-defined]
    params.ftype, params.nthread, params.allow_requantize = ftype, threads, allow_requantize
    part = dst.with_name(dst.name + ".part")
    part.unlink(missing_ok=True)
    with _LogCapture(llama_cpp, progress) as log:
        rc = llama_cpp.llama_model_quantize(  # type: ignore[attr-defined]
            str(src).encode(), str(part).encode(), ctypes.byref(params)
        )
    if rc != 0 or not part.is_file():
        part.unlink(missing_ok=True)
        detail = "; ".join(log.errors) or f"llama_model_quantize returned {rc}"
        raise QuantizeError(f"quantizing {src.name} to {qtype} failed: {detail}")
    part.rename(dst)
    return read_gguf(dst)
