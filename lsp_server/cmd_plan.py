"""`codeflow plan`: which quant, how many GPU layers, what context and cache, or remote."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from codeflow.quant import hardware
from codeflow.quant.errors import PlanError, QuantError
from codeflow.quant.memory import KV_TYPES, DeviceUse
from codeflow.quant.planner import Plan, candidates_from_path, candidates_from_profile, plan
from codeflow.quant.profiles import PROFILES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `plan` subcommand."""
    p = subparsers.add_parser(
        "plan", help="plan model placement for this (or a described) machine",
        description="Choose a GGUF quant, GPU layers, context and KV cache type, or a remote server.",
    )
    p.add_argument("model", nargs="?", type=Path, help="a GGUF file or a directory of quants")
    p.add_argument("--profile", choices=sorted(PROFILES), help="a built-in model profile")
    p.add_argument("--recommend", action="store_true",
                   help="the best completion and chat presets for this machine (codeflow model pull)")
    p.add_argument("--quant", help="restrict a profile to these quant types (comma-separated)")
    add_hardware_args(p)
    p.add_argument("--prefer", choices=("speed", "quality"), default="quality")
    p.add_argument("--kv-type", choices=KV_TYPES, help="force the KV cache type")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=handler)


def add_hardware_args(p: argparse.ArgumentParser) -> None:
    """--gpu, --ram, --cores and --ctx: describe a machine instead of probing this one."""
    p.add_argument("--gpu", help='GPUs instead of probing: "1xA100-80GB", "2xA100-80GB", "none"')
    p.add_argument("--ram", help='RAM instead of probing: "64G"')
    p.add_argument("--cores", type=int, help="CPU cores instead of probing")
    p.add_argument("--ctx", type=int, default=4096, help="wanted context length (default 4096)")


def hardware_from_args(args: argparse.Namespace) -> hardware.Hardware:
    """The probed machine, with what --gpu, --ram and --cores describe instead."""
    hw = hardware.given(args.gpu, args.ram) if (args.gpu or args.ram) else hardware.probe()
    if args.cores is not None:
        if args.cores < 1:
            raise PlanError(f"--cores must be at least 1, got {args.cores}")
        hw = msgspec.structs.replace(hw, cpu_cores=args.cores, cpu_threads=args.cores, source="given")
    return hw


def handler(args: argparse.Namespace) -> int:
    """Run the planner and print its answer; exit 2 on bad input."""
    if args.recommend:
        return recommend_handler(args)
    if (args.model is None) == (args.profile is None):
        print("codeflow plan: give a model path or --profile, not both", file=sys.stderr)
        return 2
    try:
        hw = hardware_from_args(args)
        if args.profile:
            quants = args.quant.split(",") if args.quant else None
            cands, warnings = candidates_from_profile(args.profile, quants), []
        else:
            cands, warnings = candidates_from_path(args.model)
        result = plan(cands, hw, args.ctx, args.prefer, args.kv_type, warnings)
    except QuantError as exc:
        print(f"codeflow plan: {exc}", file=sys.stderr)
        return 2
    return _emit(result, args.json, render)


def _gib(n: int) -> str:
    return f"{n / 1024**3:8.2f}"


def _device_row(d: DeviceUse) -> str:
    cap = _gib(d.capacity_bytes) if d.capacity_bytes else "       -"
    return (f"  {d.device:<6} {d.name[:18]:<18} {d.n_layers:>6} {_gib(d.weights_bytes)} "
            f"{_gib(d.kv_bytes)} {_gib(d.compute_bytes + d.overhead_bytes)} {_gib(d.total_bytes)} {cap}")


def render(result: Plan) -> str:
    """The plan as a readable table (GiB)."""
    model = result.model_file or result.profile or "-"
    lines = [
        f"backend      {result.backend}",
        f"model        {model}",
        f"quant        {result.quant or '-'}",
        f"n_gpu_layers {result.n_gpu_layers}",
        f"n_ctx        {result.n_ctx}",
        f"kv_type      {result.kv_type}{'  (flash attention)' if result.flash_attn else ''}",
        f"hardware     {result.hardware}",
        f"reason       {result.reason}",
    ]
    if result.estimate is not None:
        e = result.estimate
        lines += ["", "  device name               layers  weights       KV  compute    total capacity",
                  *(_device_row(d) for d in e.per_device),
                  f"  {'total':<25} {'':>6} {_gib(e.weights_bytes)} {_gib(e.kv_bytes)} "
                  f"{_gib(e.compute_bytes + e.overhead_bytes)} {_gib(e.total_bytes)}   (GiB)"]
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"


def recommend_handler(args: argparse.Namespace) -> int:
    """Print the recommended presets for this (or the described) machine; exit 2 on bad input."""
    from codeflow.quant.presets import load_presets
    from codeflow.quant.recommend import recommend

    try:
        rec = recommend(load_presets(), hardware_from_args(args), args.ctx)
    except QuantError as exc:
        print(f"codeflow plan: {exc}", file=sys.stderr)
        return 2
    return _emit(rec, args.json, render_recommendation)


def render_recommendation(rec) -> str:  # noqa: ANN001 - quant.recommend.Recommendation, imported lazily
    """The recommendation as readable lines, with the commands that act on it."""
    lines = [f"hardware     {rec.hardware}", f"n_ctx        {rec.n_ctx}"]
    for role, pick in (("completion", rec.completion), ("chat", rec.chat)):
        if pick is None:
            lines.append(f"{role:<12} nothing fits locally")
            continue
        where = "CPU only" if pick.n_gpu_layers == 0 else f"n_gpu_layers {pick.n_gpu_layers}"
        lines += [
            f"{role:<12} {pick.preset} {pick.quant}  ({pick.repo}, {pick.size_bytes / 2**30:.1f} GiB)",
            f"{'':<12} {where}, n_ctx {pick.n_ctx}, {pick.kv_type} KV"
            f"{' (flash attention)' if pick.flash_attn else ''}, needs {pick.needs_bytes / 2**30:.1f} GiB",
            f"{'':<12} codeflow model pull {pick.preset} --quant {pick.quant} && codeflow model use {pick.preset}",
        ]
    for r in rec.remote:
        lines.append(f"remote       {r.role}: {r.display} ({r.repo}): {r.reason}")
    return "\n".join(lines) + "\n"


def _emit(value: object, as_json: bool, render_text: Callable[[Any], str]) -> int:
    """Print a plan or a recommendation: JSON for scripts, or text for people."""
    if as_json:
        sys.stdout.write(msgspec.json.format(msgspec.json.encode(value)).decode() + "\n")
    else:
        sys.stdout.write(render_text(value))
    return 0
