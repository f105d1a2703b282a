"""Decide, before loading anything, which quant runs where: local GPU/CPU, or a remote endpoint.

Inputs are candidate models (GGUF files, or a built-in profile expanded over the quant types),
the hardware (probed or given), the wanted context and a speed/quality preference. For each
candidate the planner looks for the cheapest placement that fits: every layer on the GPUs with an
f16 cache, then a q8_0 or q4_0 cache (these need flash attention), then part of the layers on the
GPUs, then the CPU alone. When nothing fits it answers "remote", with the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import msgspec

from codeflow.quant import memory
from codeflow.quant.errors import GGUFError, PlanError
from codeflow.quant.gguf_info import read_gguf
from codeflow.quant.hardware import GIB, Hardware, probe
from codeflow.quant.memory import Estimate, Geometry, RunConfig
from codeflow.quant.profiles import MIN_GOOD_BPW, QUANT_TYPES, get_profile

Prefer = Literal["speed", "quality"]
# Leave this share of available RAM to the editor, the LSP server and the OS.
RAM_HEADROOM = 0.9
# Allocator fragmentation and driver reservations the estimate does not see.
GPU_HEADROOM = 0.95
LOOP_WARNING = (
    "{name} runs its layers {loop} times per token; mainline llama.cpp has no loop support and "
    "would silently run one pass, so it must be served by vLLM with the model's own code"
)


class Plan(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """The planner's answer; `codeflow plan --json` prints exactly this."""

    backend: Literal["local", "remote"]
    reason: str
    model_file: str | None = None
    profile: str | None = None
    quant: str | None
    n_gpu_layers: int
    n_ctx: int
    kv_type: str
    flash_attn: bool = False
    estimate: Estimate | None
    hardware: str = ""
    warnings: tuple[str, ...] = ()


class Candidate(msgspec.Struct, kw_only=True, frozen=True):
    """One model the planner may choose: a GGUF file, or a profile at one quant type."""

    geometry: Geometry
    quant: str
    bpw: float
    model_file: str | None = None
    profile: str | None = None
    display: str = ""


class _Placement(msgspec.Struct, kw_only=True, frozen=True):
    n_gpu_layers: int
    kv_type: str
    flash_attn: bool
    estimate: Estimate
    # 2: every layer on GPUs, 1: some layers, 0: CPU only.
    tier: int


def candidates_from_path(path: Path) -> tuple[list[Candidate], list[str]]:
    """Candidates from one GGUF file or a directory of them; unreadable files become warnings."""
    if path.is_dir():
        files = sorted(p for p in path.glob("*.gguf") if not _is_later_split(p))
        if not files:
            raise PlanError(f"no .gguf files in {path}")
    elif path.is_file():
        files = [path]
    else:
        raise PlanError(f"model path {path} does not exist")
    out, warnings = [], []
    for file in files:
        try:
            info = read_gguf(file)
        except GGUFError as exc:
            if len(files) == 1:
                raise
            warnings.append(f"skipped {file.name}: {exc}")
            continue
        geom = memory.geometry_from_gguf(info)
        params = sum(t.n_elements for t in info.tensors) or 1
        out.append(Candidate(geometry=geom, quant=info.file_type, model_file=str(file),
                             bpw=info.weights_bytes * 8 / params, display=info.name))
    return out, warnings


def _is_later_split(path: Path) -> bool:
    name = path.name
    return "-of-" in name and not name.removesuffix(".gguf").rsplit("-of-", 1)[0].endswith("00001")


def candidates_from_profile(name: str, quants: Sequence[str] | None = None) -> list[Candidate]:
    """A profile expanded over the quant types (all of them unless `quants` names some)."""
    profile = get_profile(name)
    wanted = {q.upper() for q in quants} if quants else None
    return [
        Candidate(geometry=memory.geometry_from_profile(profile, q), quant=q.name, bpw=q.bpw,
                  profile=profile.name, display=profile.display)
        for q in QUANT_TYPES if wanted is None or q.name in wanted
    ]


def _fits(est: Estimate, hw: Hardware) -> bool:
    for dev in est.per_device:
        if dev.device == "cpu":
            limit = hw.ram_available_bytes * RAM_HEADROOM
        else:
            limit = dev.capacity_bytes * GPU_HEADROOM
        if dev.total_bytes > limit:
            return False
    return True


def _run(geom: Geometry, ngl: int, kv: str, fa: bool, n_ctx: int, hw: Hardware) -> Estimate:
    cfg = RunConfig(n_ctx=n_ctx, kv_type=kv, flash_attn=fa)
    gpus = hw.gpus if ngl > 0 else ()
    return memory.estimate(geom, cfg, ngl, gpus, hw.ram_available_bytes)


def _kv_order(kv_type: str | None) -> list[tuple[str, bool]]:
    """Cache types to try, each with whether it needs flash attention (quantized V does)."""
    if kv_type is not None:
        return [(kv_type, kv_type != "f16")]
    return [("f16", False), ("q8_0", True), ("q4_0", True)]


def _gpu_placement(geom: Geometry, hw: Hardware, n_ctx: int, kv_type: str | None) -> _Placement | None:
    full = geom.n_layer + 1
    for kv, _ in _kv_order(kv_type):
        # On a GPU flash attention is always worth it: it removes the n_ctx x n_ubatch KQ buffer.
        est = _run(geom, full, kv, True, n_ctx, hw)
        if _fits(est, hw):
            return _Placement(n_gpu_layers=full, kv_type=kv, flash_attn=True, estimate=est, tier=2)
    kv, _ = _kv_order(kv_type)[0]
    lo, hi, best = 1, geom.n_layer, None
    while lo <= hi:
        mid = (lo + hi) // 2
        est = _run(geom, mid, kv, True, n_ctx, hw)
        if _fits(est, hw):
            best = _Placement(n_gpu_layers=mid, kv_type=kv, flash_attn=True, estimate=est, tier=1)
            lo = mid + 1
        else:
            hi = mid - 1
    return best


def _cpu_placement(geom: Geometry, hw: Hardware, n_ctx: int, kv_type: str | None) -> _Placement | None:
    for kv, needs_fa in _kv_order(kv_type):
        est = _run(geom, 0, kv, needs_fa, n_ctx, hw)
        if _fits(est, hw):
            return _Placement(n_gpu_layers=0, kv_type=kv, flash_attn=needs_fa, estimate=est, tier=0)
    return None


def place(cand: Candidate, hw: Hardware, n_ctx: int, kv_type: str | None = None) -> _Placement | None:
    """The best placement of one candidate on `hw`, or None when it does not fit at all."""
    if hw.gpus and hw.gpu_offload is not False:
        found = _gpu_placement(cand.geometry, hw, n_ctx, kv_type)
        if found is not None:
            return found
    return _cpu_placement(cand.geometry, hw, n_ctx, kv_type)


def _choose(options: list[tuple[Candidate, _Placement]], prefer: Prefer) -> tuple[Candidate, _Placement]:
    good = [o for o in options if o[0].bpw >= MIN_GOOD_BPW] or options
    if prefer == "speed":
        # Generation is memory-bound: all layers on the GPU first, then the fewest bytes.
        return max(good, key=lambda o: (o[1].tier, -o[1].estimate.weights_bytes))
    # Quality: the largest quant that keeps the best tier reachable (partial offload is far slower).
    top = max(o[1].tier for o in options)
    # F32 holds no more than F16, so bits past 16 do not count; then the smaller file wins.
    return max((o for o in options if o[1].tier == top),
               key=lambda o: (min(o[0].bpw, 16.0), -o[1].estimate.weights_bytes))


def _gib(n: int) -> str:
    return f"{n / GIB:.1f} GiB" if n >= GIB // 10 else f"{n / 2**20:.1f} MiB"


def _capacity(hw: Hardware) -> str:
    ram = f"{_gib(int(hw.ram_available_bytes * RAM_HEADROOM))} of RAM usable"
    if not hw.gpus:
        return f"no GPU, {ram}"
    if hw.gpu_offload is False:
        return f"{len(hw.gpus)} GPU(s) unusable (llama.cpp built without GPU support), {ram}"
    free = sum(g.free_bytes for g in hw.gpus)
    return f"{len(hw.gpus)} GPU(s) have {_gib(free)} free, {ram}"


def _why_remote(cands: list[Candidate], hw: Hardware, n_ctx: int, kv_type: str | None) -> tuple[str, Candidate, Estimate]:
    smallest = min(cands, key=lambda c: c.bpw)
    kv = kv_type or "q4_0"
    on_gpu = bool(hw.gpus) and hw.gpu_offload is not False
    est = _run(smallest.geometry, smallest.geometry.n_layer + 1 if on_gpu else 0, kv, True, n_ctx, hw)
    reason = (
        f"nothing fits locally: the smallest option, {smallest.quant} at n_ctx {n_ctx} with a {kv} "
        f"cache, needs {_gib(est.total_bytes)} (weights {_gib(est.weights_bytes)}, KV "
        f"{_gib(est.kv_bytes)}, compute {_gib(est.compute_bytes)}); {_capacity(hw)}"
    )
    return reason, smallest, est


def _reason(cand: Candidate, pl: _Placement, hw: Hardware, prefer: Prefer) -> str:
    on_gpu = sum(d.n_layers for d in pl.estimate.per_device if d.device != "cpu")
    where = {2: f"all {cand.geometry.n_layer} layers on {len(hw.gpus)} GPU(s)",
             1: f"{on_gpu} of {cand.geometry.n_layer} layers and the output on GPU, the rest on CPU",
             0: "CPU only"}[pl.tier]
    return (f"{cand.quant} fits with {where}, {pl.kv_type} KV cache: needs "
            f"{_gib(pl.estimate.total_bytes)}; {_capacity(hw)}; preference {prefer}")


def plan(
    cands: Sequence[Candidate], hw: Hardware, n_ctx: int = 4096, prefer: Prefer = "quality",
    kv_type: str | None = None, warnings: Sequence[str] = (),
) -> Plan:
    """Pick the candidate and placement that fit `hw`, or answer remote with the numbers."""
    if not cands:
        raise PlanError("no candidate models to plan for")
    if n_ctx < 1:
        raise PlanError(f"n_ctx must be positive, got {n_ctx}")
    notes = list(warnings)
    first = cands[0]
    train = first.geometry.n_ctx_train
    if train and n_ctx > train:
        notes.append(f"n_ctx {n_ctx} is past the model's training context {train}; using {train}")
        n_ctx = train
    options = [(c, p) for c in cands if (p := place(c, hw, n_ctx, kv_type)) is not None]
    if first.geometry.loop > 1:
        return _loop_plan(list(cands), options, hw, n_ctx, kv_type, prefer, notes)
    if not options:
        reason, cand, est = _why_remote(list(cands), hw, n_ctx, kv_type)
        return _remote_plan(cand, est, n_ctx, kv_type, hw, notes, reason=reason)
    cand, pl = _choose(options, prefer)
    if cand.bpw < MIN_GOOD_BPW:
        notes.append(f"{cand.quant} ({cand.bpw:.2f} bits/weight) loses noticeable quality")
    if pl.kv_type != "f16":
        notes.append(f"{pl.kv_type} KV cache needs flash attention (flash_attn=True)")
    return Plan(
        backend="local", reason=_reason(cand, pl, hw, prefer), model_file=cand.model_file,
        profile=cand.profile, quant=cand.quant, n_gpu_layers=pl.n_gpu_layers, n_ctx=n_ctx,
        kv_type=pl.kv_type, flash_attn=pl.flash_attn, estimate=pl.estimate,
        hardware=hw.describe(), warnings=tuple(notes),
    )


def _remote_plan(cand: Candidate, est: Estimate, n_ctx: int, kv_type: str | None, hw: Hardware,
                 notes: list[str], *, reason: str) -> Plan:
    return Plan(
        backend="remote", reason=reason, model_file=cand.model_file, profile=cand.profile,
        quant=cand.quant, n_gpu_layers=0, n_ctx=n_ctx, kv_type=kv_type or "q4_0", estimate=est,
        hardware=hw.describe(), warnings=tuple(notes),
    )


def _loop_plan(cands: list[Candidate], options: list[tuple[Candidate, _Placement]], hw: Hardware,
               n_ctx: int, kv_type: str | None, prefer: Prefer, notes: list[str]) -> Plan:
    """Loop models always go remote: a local llama.cpp run would silently skip the second pass."""
    first = cands[0]
    notes.insert(0, LOOP_WARNING.format(name=first.display, loop=first.geometry.loop).upper())
    reason = (f"{first.display} loops {first.geometry.loop} times over its layers; llama.cpp cannot, "
              "so it needs a remote vLLM server (docs/remote.md)")
    if options:
        cand, pl = _choose(options, prefer)
        reason += f"; a one-pass local {cand.quant} would need {_gib(pl.estimate.total_bytes)}"
        return _remote_plan(cand, pl.estimate, n_ctx, pl.kv_type, hw, notes, reason=reason)
    why, cand, est = _why_remote(cands, hw, n_ctx, kv_type)
    return _remote_plan(cand, est, n_ctx, kv_type, hw, notes, reason=f"{reason}; {why}")


def plan_local(
    model_path: Path, hardware: Hardware | None = None, n_ctx: int = 4096, kv_type: str | None = None,
) -> Plan:
    """Plan one GGUF file (or a directory of quants) for this machine; reads metadata only."""
    cands, warnings = candidates_from_path(Path(model_path))
    if not cands:
        raise PlanError(f"no readable GGUF model in {model_path}: {'; '.join(warnings)}")
    return plan(cands, hardware or probe(), n_ctx, "quality", kv_type, warnings)
