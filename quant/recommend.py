"""Which presets to run on a machine: the best completion and chat models that fit, or remote.

For each role the presets are tried best-ranked first, each through the planner (completion
prefers the smallest good quant on a CPU, otherwise both prefer quality). A preset is taken when the planner puts all its layers on the
GPUs, or, without a GPU that holds it, when it runs on the CPU and is small enough for the
cores to answer interactively. The chat model is planned on what the completion model leaves,
because the server keeps both loaded. When a role has no local answer, the best remote preset
is named instead (docs/remote.md).
"""

from __future__ import annotations

import msgspec

from codeflow.quant.hardware import Hardware
from codeflow.quant.memory import Estimate
from codeflow.quant.planner import Plan, Prefer, plan
from codeflow.quant.presets import Preset
from codeflow.quant.profiles import MIN_GOOD_BPW, QUANTS

# Parameters per physical core a CPU-only model may have, per role. A rule of thumb, not a
# measurement: decode on a CPU is memory-bound, and completion must answer while the user types
# (about 10 tokens/s), while a hover or action may take a few seconds. 2 cores: 0.8B/2B.
CPU_PARAMS_PER_CORE = {"completion": 0.4e9, "chat": 1.0e9}
# Completion runs on every pause in typing, so even a large GPU gets a model of at most 8B:
# llama.vscode's largest completion tier is Qwen2.5-Coder-7B ("more than 16GB VRAM"), and the
# memory a larger one would take is better spent on the chat model.
COMPLETION_MAX_PARAMS = 8e9


class Pick(msgspec.Struct, kw_only=True, frozen=True):
    """One recommended preset, at one quant, with the planner's placement."""

    role: str
    preset: str
    display: str
    repo: str
    quant: str
    file: str
    size_bytes: int
    n_gpu_layers: int
    n_ctx: int
    kv_type: str
    flash_attn: bool
    needs_bytes: int
    reason: str


class RemoteOption(msgspec.Struct, kw_only=True, frozen=True):
    """A model to serve with vLLM when a role has nothing local."""

    role: str
    preset: str
    display: str
    repo: str
    reason: str


class Recommendation(msgspec.Struct, kw_only=True, frozen=True):
    """`codeflow plan --recommend --json` prints exactly this."""

    hardware: str
    n_ctx: int
    completion: Pick | None
    chat: Pick | None
    remote: tuple[RemoteOption, ...] = ()


def _prefer(role: str, hw: Hardware) -> Prefer:
    return "speed" if role == "completion" and hw.cpu_only else "quality"


def _acceptable(preset: Preset, result: Plan, hw: Hardware, role: str) -> bool:
    if role == "completion" and preset.profile.params() > COMPLETION_MAX_PARAMS:
        return False
    if result.backend != "local" or result.quant is None or QUANTS[result.quant].bpw < MIN_GOOD_BPW:
        return False
    if result.n_gpu_layers >= preset.profile.n_layer + 1:
        return True
    return preset.profile.params() <= hw.cpu_cores * CPU_PARAMS_PER_CORE[role]


def _pick(preset: Preset, result: Plan, role: str) -> Pick:
    assert result.quant is not None and result.estimate is not None
    return Pick(
        role=role, preset=preset.name, display=preset.display, repo=preset.repo,
        quant=result.quant, file=preset.file_for(result.quant),
        size_bytes=preset.size_bytes(result.quant), n_gpu_layers=result.n_gpu_layers,
        n_ctx=result.n_ctx, kv_type=result.kv_type, flash_attn=result.flash_attn,
        needs_bytes=result.estimate.total_bytes, reason=result.reason,
    )


def best_for(role: str, presets: dict[str, Preset], hw: Hardware, n_ctx: int) -> Pick | None:
    """The best-ranked local preset for `role` that the planner fits on `hw`, or None."""
    local = [p for p in presets.values() if p.serves(role) and not p.remote]
    for preset in sorted(local, key=lambda p: -p.rank):
        result = plan(preset.candidates(), hw, n_ctx, _prefer(role, hw))
        if _acceptable(preset, result, hw, role):
            return _pick(preset, result, role)
    return None


def remaining(hw: Hardware, est: Estimate) -> Hardware:
    """`hw` less what a loaded model takes on each device."""
    used = {d.device: d.total_bytes for d in est.per_device}
    gpus = tuple(msgspec.structs.replace(g, free_bytes=max(0, g.free_bytes - used.get(f"gpu{g.index}", 0)))
                 for g in hw.gpus)
    ram = max(0, hw.ram_available_bytes - used.get("cpu", 0))
    return msgspec.structs.replace(hw, gpus=gpus, ram_available_bytes=ram)


def _remote(role: str, presets: dict[str, Preset], hw: Hardware, n_ctx: int) -> RemoteOption:
    best = max((p for p in presets.values() if p.serves(role)), key=lambda p: p.rank)
    local = [p for p in presets.values() if p.serves(role) and not p.remote]
    why = f"no {role} preset fits this machine"
    if local:
        smallest = min(local, key=lambda p: p.profile.params())
        why += f" ({smallest.name}: {plan(smallest.candidates(), hw, n_ctx, _prefer(role, hw)).reason})"
    return RemoteOption(role=role, preset=best.name, display=best.display, repo=best.repo,
                        reason=f"{why}; serve {best.repo} with vLLM and set backend = \"remote\" (docs/remote.md)")


def recommend(presets: dict[str, Preset], hw: Hardware, n_ctx: int = 4096) -> Recommendation:
    """The best completion and chat presets for `hw`, and remote options for what does not fit."""
    completion = best_for("completion", presets, hw, n_ctx)
    left = hw
    if completion is not None:
        chosen = plan(presets[completion.preset].candidates((completion.quant,)), hw, n_ctx)
        assert chosen.estimate is not None
        left = remaining(hw, chosen.estimate)
    chat = best_for("chat", presets, left, n_ctx)
    remote = tuple(_remote(role, presets, left if role == "chat" else hw, n_ctx)
                   for role, pick in (("completion", completion), ("chat", chat)) if pick is None)
    return Recommendation(hardware=hw.describe(), n_ctx=n_ctx, completion=completion, chat=chat, remote=remote)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def describe_pick(pick: Pick) -> str:
    """One line: preset, quant, placement, context, cache and memory."""
    where = "CPU" if pick.n_gpu_layers == 0 else f"{pick.n_gpu_layers} layers on GPU"
    return (f"{pick.preset} {pick.quant} ({_gib(pick.size_bytes)} file; {where}, n_ctx {pick.n_ctx}, "
            f"{pick.kv_type} KV, needs {_gib(pick.needs_bytes)})")


def summary(rec: Recommendation) -> str:
    """The recommendation in one line, for `codeflow doctor` and the server's status."""
    parts = [f"{pick.role}: {describe_pick(pick)}" for pick in (rec.completion, rec.chat) if pick]
    parts += [f"{r.role}: remote {r.preset}" for r in rec.remote]
    return "; ".join(parts)


def default_model_advice(n_ctx: int) -> str:
    """What to run instead of the embedded demo model on this machine, in one line (the server's
    status tooltip; `codeflow doctor` says the same with the commands)."""
    from .hardware import probe
    from .presets import load_presets

    return f"The embedded model is a demo. This machine could run: {summary(recommend(load_presets(), probe(), n_ctx))}"
