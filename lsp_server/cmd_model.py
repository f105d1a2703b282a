"""`codeflow model list|pull|use|remove`: code-model presets, downloaded from the hub (issue 15)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import msgspec

from codeflow.lsp_server.cmd_plan import add_hardware_args, hardware_from_args
from codeflow.quant.errors import QuantError
from codeflow.quant.hardware import Hardware

ROLE_KEYS = {"completion": ("path",), "chat": ("chat_path",), "both": ("path", "chat_path")}


class QuantFit(msgspec.Struct, kw_only=True, frozen=True):
    """One quant of a preset: its file, expected size, whether it fits, whether it is here."""

    quant: str
    file: str
    size_bytes: int
    fits: str
    pulled: bool
    path: str = ""


class PresetRow(msgspec.Struct, kw_only=True, frozen=True):
    """One line of `codeflow model list --json`."""

    name: str
    display: str
    role: str
    repo: str
    params_b: float
    remote: str
    recommended_quant: str | None
    fits: bool
    quants: tuple[QuantFit, ...]
    prompt_source: str


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `model` subcommand and its four actions."""
    p = sub.add_parser("model", help="list, download, select and remove code-model presets")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    ls = actions.add_parser("list", help="presets, size per quant, and what fits this machine")
    ls.add_argument("--json", action="store_true")
    add_hardware_args(ls)
    ls.set_defaults(func=run_list)
    pull = actions.add_parser("pull", help="download a preset (the planner picks the quant)")
    pull.add_argument("name")
    pull.add_argument("--quant", help="a quant type such as Q4_K_M (default: the best that fits)")
    pull.add_argument("--json", action="store_true", help="JSON lines: progress events, then the result")
    add_hardware_args(pull)
    pull.set_defaults(func=run_pull)
    use = actions.add_parser("use", help="write a pulled preset into the user codeflow.toml")
    use.add_argument("name")
    use.add_argument("--quant", help="which pulled quant (default: the best pulled one that fits)")
    add_hardware_args(use)
    use.set_defaults(func=run_use)
    rm = actions.add_parser("remove", help="delete a preset's downloaded files")
    rm.add_argument("name")
    rm.add_argument("--quant", help="only this quant (default: every pulled quant)")
    rm.set_defaults(func=run_remove)


def _fail(exc: Exception) -> int:
    print(f"codeflow model: {exc}", file=sys.stderr)
    return 1


def _presets():  # noqa: ANN202 - dict[str, Preset], imported lazily with the rest of quant/
    from codeflow.quant.presets import load_presets

    return load_presets()


def _fit_label(preset, quant: str, hw: Hardware, n_ctx: int) -> str:  # noqa: ANN001
    from codeflow.quant.planner import place

    found = place(preset.candidates((quant,))[0], hw, n_ctx)
    return "no" if found is None else {2: "gpu", 1: "partial", 0: "cpu"}[found.tier]


def best_quant(preset, hw: Hardware, n_ctx: int, among: tuple[str, ...] | None = None) -> str | None:  # noqa: ANN001
    """The planner's quant for this preset on `hw` (completion: smallest good one on a CPU)."""
    from codeflow.quant.planner import plan

    prefer = "speed" if preset.serves("completion") and hw.cpu_only else "quality"
    result = plan(preset.candidates(among), hw, n_ctx, prefer)
    return result.quant if result.backend == "local" else None


def _row(preset, hw: Hardware, n_ctx: int) -> PresetRow:  # noqa: ANN001
    from codeflow.quant import hub

    here = hub.pulled(preset)
    quants = tuple(
        QuantFit(quant=q, file=preset.file_for(q), size_bytes=preset.size_bytes(q),
                 fits=_fit_label(preset, q, hw, n_ctx), pulled=q in here, path=str(here.get(q, "")))
        for q in preset.quants
    )
    best = None if preset.remote else best_quant(preset, hw, n_ctx)
    return PresetRow(
        name=preset.name, display=preset.display, role=preset.role, repo=preset.repo,
        params_b=round(preset.profile.params() / 1e9, 2), remote=preset.remote,
        recommended_quant=best, fits=best is not None, quants=quants, prompt_source=preset.prompt.source,
    )


def run_list(args: argparse.Namespace) -> int:
    """Print the presets with sizes and fit; exit 1 on bad input."""
    try:
        hw = hardware_from_args(args)
        rows = [_row(p, hw, args.ctx) for p in sorted(_presets().values(), key=lambda p: (p.role, p.rank))]
    except QuantError as exc:
        return _fail(exc)
    if args.json:
        sys.stdout.write(msgspec.json.encode(rows).decode() + "\n")
        return 0
    print(f"hardware: {hw.describe()}; n_ctx {args.ctx}")
    print(f"{'preset':<34} {'role':<10} {'params':>7}  quants (GiB; * fits, + pulled)")
    for r in rows:
        sizes = "remote only: " + r.remote if r.remote else "  ".join(
            f"{q.quant}{'*' if q.fits != 'no' else ''}{'+' if q.pulled else ''} {q.size_bytes / 2**30:.1f}"
            for q in r.quants)
        print(f"{r.name:<34} {r.role:<10} {r.params_b:>6.1f}B  {sizes}")
    return 0


def run_pull(args: argparse.Namespace) -> int:
    """Download one quant of a preset; exit 1 when it cannot."""
    from codeflow.quant import hub
    from codeflow.quant.presets import check_quant, get_preset

    try:
        preset = get_preset(_presets(), args.name)
        quant = check_quant(preset, args.quant) if args.quant else _auto_quant(preset, args)
        print(f"pulling {preset.repo}/{preset.file_for(quant)} from {hub.endpoint()}", file=sys.stderr)
        result = hub.pull(preset, quant, _json_progress if args.json else None)
    except QuantError as exc:
        return _fail(exc)
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    if args.json:
        sys.stdout.write(msgspec.json.encode({"event": "done", **msgspec.to_builtins(result)}).decode() + "\n")
    else:
        print(f"{result.path}\nnext: codeflow model use {preset.name}")
    return 0


def _auto_quant(preset, args: argparse.Namespace) -> str:  # noqa: ANN001
    from codeflow.quant.errors import PresetError

    hw = hardware_from_args(args)
    quant = best_quant(preset, hw, args.ctx)
    if quant is None:
        raise PresetError(f"no quant of {preset.name} fits {hw.describe()} at n_ctx {args.ctx}; "
                          "give --quant to download one anyway, or see `codeflow plan --recommend`")
    return quant


def _json_progress(done: int, total: int) -> None:
    sys.stdout.write(msgspec.json.encode({"event": "progress", "done": done, "total": total}).decode() + "\n")
    sys.stdout.flush()


def run_use(args: argparse.Namespace) -> int:
    """Point model.path (completion) and/or model.chat_path (chat) at a pulled preset."""
    from codeflow.quant import hub
    from codeflow.quant.errors import PresetError
    from codeflow.quant.presets import check_quant, get_preset

    try:
        preset = get_preset(_presets(), args.name)
        here = hub.pulled(preset)
        if args.quant:
            quant = check_quant(preset, args.quant)
        else:
            quant = best_quant(preset, hardware_from_args(args), args.ctx, tuple(here)) if here else None
            quant = quant or next(iter(here), None)
        if quant not in here:
            raise PresetError(f"{preset.name} {quant or ''} is not downloaded; run "
                              f"`codeflow model pull {preset.name}` first".replace("  ", " "))
        written = write_user_config({k: str(here[quant]) for k in ROLE_KEYS[preset.role]})
    except (QuantError, OSError) as exc:
        return _fail(exc)
    keys = " and ".join(f"model.{k}" for k in ROLE_KEYS[preset.role])
    print(f"{keys} = {here[quant]} ({preset.name} {quant}) in {written}")
    return 0


def write_user_config(model_keys: dict[str, str]) -> Path:
    """Set keys of the [model] table in the user codeflow.toml, keeping the rest of the file."""
    import platformdirs
    import tomlkit

    from codeflow.lsp_server import settings as config

    path = Path(platformdirs.user_config_dir("codeflow")) / config.CONFIG_FILE
    doc = tomlkit.parse(path.read_text(encoding="utf-8")) if path.is_file() else tomlkit.document()
    table = doc.get("model")
    if table is None:
        table = tomlkit.table()
        doc["model"] = table
    for key, value in model_keys.items():
        # Settings accept snake_case and camelCase; drop the other spelling so one value stays.
        camel = re.sub(r"_(\w)", lambda m: m.group(1).upper(), key)
        if camel != key:
            table.pop(camel, None)
        table[key] = value
    raw = msgspec.toml.decode(tomlkit.dumps(doc).encode())
    _, errors = config.apply_layer(config.Settings(), raw)
    if errors:
        raise QuantError(f"not writing {path}: {'; '.join(str(e) for e in errors)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomlkit.dumps(doc), encoding="utf-8")
    return path


def run_remove(args: argparse.Namespace) -> int:
    """Delete a preset's downloaded files and say how much was freed."""
    from codeflow.quant import hub
    from codeflow.quant.presets import get_preset

    try:
        paths, freed = hub.remove(get_preset(_presets(), args.name), args.quant)
    except QuantError as exc:
        return _fail(exc)
    for path in paths:
        print(f"removed {path}")
    print(f"freed {freed / 2**20:.1f} MiB")
    return 0
