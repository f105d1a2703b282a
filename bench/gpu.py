"""Benchmark on a GPU machine: the planner's VRAM estimate against what llama.cpp's CUDA backend
really takes, decode and prompt speed with every layer offloaded, and the plans the planner makes
for the target models on the probed card.

Each load runs in a fresh process that reads the device's used memory through NVML before it
imports llama_cpp (so the CUDA context counts), after loading, and after a 512-token prompt and
128 decoded tokens (the peak); llama.cpp's log gives its own buffer sizes. The models are the
generated random-weight ones of `bench/plan.py` plus a larger one, so nothing is downloaded.

Run: `codeflow bench gpu` on a machine with an NVIDIA GPU and a CUDA build of llama-cpp-python.
Without one it records why nothing was measured. `--render FILE` rewrites the README section
from a saved results file (for figures measured on another machine).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "tests")]

from plan import GENERATED, MIB, TARGET, run_child  # noqa: E402
from report import machine, table, write  # noqa: E402

from codeflow.quant.gguf_info import read_gguf  # noqa: E402
from codeflow.quant.hardware import probe  # noqa: E402
from codeflow.quant.memory import GPU_RUNTIME_BYTES, RunConfig, estimate, geometry_from_gguf  # noqa: E402

MODELS = {
    "gen-medium-f32": GENERATED["gen-medium-f32"],
    "gen-large-f32": dict(n_layer=16, n_embd=2048, n_head=16, n_head_kv=8, n_ff=5632),
}
# GPU layers per model: -1 offloads everything; a partial offload checks the planner's layer split.
OFFLOADS = {"gen-medium-f32": (-1,), "gen-large-f32": (-1, 8)}
PROFILES = (("deepseek-coder-33b-instruct", 16384), ("iquest-coder-v1-40b-instruct", 32768))
_CHILD = r"""
import json, sys, time
import pynvml
pynvml.nvmlInit()
handle = pynvml.nvmlDeviceGetHandleByIndex(0)
used = lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used
args = json.loads(sys.argv[1])
base = used()
from codeflow.quant.local import load_llama as Llama
llm = Llama(model_path=args["model"], n_ctx=args["n_ctx"], n_gpu_layers=args["ngl"], verbose=True)
loaded = used()
prompt = [(i * 7919) % 200 + 10 for i in range(512)]
t0 = time.perf_counter()
first = None
count = 0
for _ in llm.generate(prompt, temp=0.0, top_k=1):
    count += 1
    if first is None:
        first = time.perf_counter()
    if count > 128:
        break
end = time.perf_counter()
print(json.dumps({"base": base, "loaded": loaded, "peak": used(), "prompt_tokens": len(prompt),
                  "prompt_s": first - t0, "decode_tokens": count - 1, "decode_s": end - first}))
"""
_LOG = {
    "model_mib": re.compile(r"CUDA0 model buffer size\s*=\s*([\d.]+) MiB"),
    "kv_mib": re.compile(r"CUDA0 KV buffer size\s*=\s*([\d.]+) MiB"),
    "compute_mib": re.compile(r"CUDA0 compute buffer size\s*=\s*([\d.]+) MiB"),
}


def measure(model: Path, n_ctx: int, ngl: int, timeout: float = 600) -> dict[str, Any]:
    """VRAM and speed of a fresh process that offloads `ngl` layers of `model` (-1: all)."""
    out = run_child(_CHILD, {"model": str(model), "n_ctx": n_ctx, "ngl": ngl}, _LOG, timeout)
    out["measured_bytes"] = out["peak"] - out["base"]
    out["prompt_tok_s"] = round(out["prompt_tokens"] / out["prompt_s"], 1)
    out["decode_tok_s"] = round(out["decode_tokens"] / out["decode_s"], 1)
    return out


def row(name: str, model: Path, n_ctx: int, ngl: int, hw: Any) -> dict[str, Any]:
    """The planner's GPU estimate for `ngl` offloaded layers against the measurement."""
    geom = geometry_from_gguf(read_gguf(model))
    # llama.cpp counts the output layer too: -1 (all) is n_layer + 1.
    est = estimate(geom, RunConfig(n_ctx=n_ctx), geom.n_layer + 1 if ngl < 0 else ngl, hw.gpus[:1])
    gpu = next(d for d in est.per_device if d.device.startswith("gpu"))
    got = measure(model, n_ctx, ngl)
    ratio = gpu.total_bytes / got["measured_bytes"]
    return {"model": name, "n_ctx": n_ctx, "n_gpu_layers": ngl, "estimate_gpu_bytes": gpu.total_bytes,
            "estimate": {k: getattr(gpu, k) for k in ("weights_bytes", "kv_bytes", "compute_bytes",
                                                       "overhead_bytes")},
            "measured": got, "ratio": round(ratio, 3), "within_target": abs(ratio - 1) <= TARGET}


def plans(hw: Any) -> list[dict[str, Any]]:
    """What `codeflow plan --profile P --ctx N` answers on the probed machine, per target model."""
    import msgspec

    from codeflow.quant.errors import QuantError
    from codeflow.quant.planner import candidates_from_profile, plan

    out = []
    for profile, ctx in PROFILES:
        try:
            result = plan(candidates_from_profile(profile, None), hw, ctx, "quality", None, [])
            out.append({"profile": profile, "ctx": ctx, "plan": msgspec.to_builtins(result)})
        except QuantError as exc:
            out.append({"profile": profile, "ctx": ctx, "error": str(exc)})
    return out


def _ratio_now(r: dict[str, Any]) -> float:
    """The row's ratio with the runtime overhead the planner assumes today."""
    est = r["estimate_gpu_bytes"] - r["estimate"]["overhead_bytes"] + GPU_RUNTIME_BYTES
    return est / r["measured"]["measured_bytes"]


def markdown(data: dict[str, Any]) -> str:
    """The README section."""
    rows = data.get("rows", [])
    hw = data.get("hardware", {})
    gpus = ", ".join(f"{g['name']} ({g['total_bytes'] / 2**30:.1f} GiB)" for g in hw.get("gpus", []))
    lines = [
        "## gpu: VRAM estimate vs measured, offloaded speed, plans on the probed card", "",
        "`codeflow bench gpu` on a GPU machine. GPU layers -1 offloads every layer, 8 half of "
        "gen-large's 16 (the planner's layer split); "
        "measured = NVML device memory used at the peak (after a 512-token prompt and 128 decoded "
        "tokens) minus before `import llama_cpp`, so the CUDA context counts. Ratio = the "
        f"planner's GPU estimate / measured; target within ±{TARGET:.0%}.", "",
        f"Measured {data.get('machine', {}).get('when', '?')} (commit "
        f"{data.get('machine', {}).get('commit', '?')}) on {gpus or 'no GPU'}; "
        f"llama-cpp-python {data.get('llama_cpp', '?')}. {data.get('note', '')}", "",
    ]
    if rows:
        lines.append(table(
            [(r["model"], r["n_ctx"], r.get("n_gpu_layers", -1), f"{r['estimate_gpu_bytes'] / MIB:.0f}",
              f"{r['measured']['measured_bytes'] / MIB:.0f}", f"{r['ratio']:.3f}",
              "yes" if r["within_target"] else "**no**",
              f"{r['measured']['model_mib']:.0f} / {r['measured']['kv_mib']:.0f} / "
              f"{r['measured']['compute_mib']:.0f}",
              r["measured"]["prompt_tok_s"], r["measured"]["decode_tok_s"], f"{_ratio_now(r):.3f}")
             for r in rows],
            ("model", "n_ctx", "GPU layers", "estimate MiB", "measured MiB", "ratio", "±10%",
             "llama.cpp model / KV / compute MiB", "prompt tok/s", "decode tok/s",
             "ratio, current runtime constant")))
        lines += ["", "The last column recomputes each estimate with today's `GPU_RUNTIME_BYTES` "
                  "(quant/memory.py), which was calibrated on these same rows: it shows the fit, "
                  "not an independent check."]
    for p in data.get("plans", []):
        plan = p.get("plan", {})
        lines += ["", f"`codeflow plan --profile {p['profile']} --ctx {p['ctx']}`: "
                  + (f"{plan.get('backend', '?')} {plan.get('quant', '')} "
                     f"n_gpu_layers={plan.get('n_gpu_layers', '?')} n_ctx={plan.get('n_ctx', '?')} "
                     f"kv={plan.get('kv_type', '?')}: {plan.get('reason', '')}"
                     if plan else f"failed: {p.get('error', '')}")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure (or re-render) and write results/gpu.json and the README section."""
    ap = argparse.ArgumentParser(prog="codeflow bench gpu")
    ap.add_argument("--contexts", default="4096,32768")
    ap.add_argument("--render", type=Path, help="write the section from a saved results file")
    ap.add_argument("--out", type=Path, help="also copy the results JSON here")
    args = ap.parse_args(argv)
    if args.render:
        data = json.loads(args.render.read_text())
        write("gpu", data, markdown(data))  # keeps the measuring machine's "machine" entry
        return 0
    import msgspec

    hw = probe()
    data: dict[str, Any] = {"machine": machine(), "hardware": msgspec.to_builtins(hw), "rows": [],
                            "plans": plans(hw)}
    try:
        import llama_cpp

        data["llama_cpp"] = llama_cpp.__version__
    except ImportError:
        data["llama_cpp"] = None
    if hw.cpu_only:
        data["note"] = "Nothing measured: " + ("; ".join(hw.notes) or "no GPU")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            from gguf_factory import write_tiny_gguf

            for name, shape in MODELS.items():
                model = write_tiny_gguf(Path(tmp) / f"{name}.gguf", n_ctx=32768, **shape)
                for n_ctx in (int(c) for c in args.contexts.split(",")):
                    for ngl in OFFLOADS[name]:
                        data["rows"].append(row(name, model, n_ctx, ngl, hw))
                        print(json.dumps(data["rows"][-1]), flush=True)
    path = write("gpu", data, markdown(data))
    if args.out:
        args.out.write_text(path.read_text())
    return 0 if all(r["within_target"] for r in data["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
