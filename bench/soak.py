"""Benchmark: a soak of `codeflow serve` (issue 12): never hangs, always answers, bounded work.

Rows: typing storms through a real `codeflow serve` over stdio, each keystroke a `didChange` and an
inline-completion request, alternately with `$/cancelRequest` before each request (as VS Code does)
and without (Neovim's plain client); the protocol fuzz (tests/test_fuzz.py); the remote fault
matrix (bench/faults.py, when present); workspace churn (10,000+ file operations with the kernel's
event queue overflowing). Per storm: requests answered / sent, the worst time-to-answer, the time
from the last keystroke to the final answer against one cold generation, generations in flight at
most (`codeflow/stats` totals), the time until the server and its worker are idle, and RSS.

Run: `codeflow bench soak [--model PATH|default] [--keys N] [--rounds N] [--interval-ms N]`.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import BENCH, table, write

TESTS = BENCH.parent / "tests"
sys.path.insert(0, str(TESTS))

from gguf_factory import write_tiny_gguf  # noqa: E402
from wire import WireServer  # noqa: E402
from workspace_churn import (  # noqa: E402
    OLD_FILES,
    OPERATIONS,
    SETTLED,
    churn_while_starved,
    settle,
    write_old_files,
)

SOURCE = "import os\n\n\ndef load_config(path):\n    with open(path) as fh:\n        return fh.read()\n\n\ndef main():\n    cfg = load_config(\n"
LINE, COL = 9, len("    cfg = load_config(")
TICK = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """The process and its children (the model worker)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        out += [int(c) for c in task.read_text().split()]
    return out


def _cpu_s(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _idle_after(srv: WireServer, since: float, limit_s: float = 30.0) -> float:
    """Seconds from `since` until the server and its worker use under 5% of a core over 200 ms."""
    while time.monotonic() - since < limit_s:
        pids = _tree(srv.proc.pid)
        start_cpu, start = _cpu_s(pids), time.monotonic()
        time.sleep(0.2)
        if (_cpu_s(pids) - start_cpu) / (time.monotonic() - start) < 0.05:
            return max(0.0, start - since)
    return limit_s


def _totals(srv: WireServer, n: int) -> dict[str, Any]:
    return srv.call(f"stats-{n}", "codeflow/stats", {}, timeout=60)["result"]["totals"]


def cold_generation_s(srv: WireServer, uri: str) -> float:
    """One completion with nothing cached (a fresh line), for the storm's goal."""
    srv.send({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
        "textDocument": {"uri": uri, "version": 1_000_000},
        "contentChanges": [{"range": {"start": {"line": LINE, "character": COL},
                                      "end": {"line": LINE, "character": COL}}, "text": "2, "}]}})
    start = time.monotonic()
    srv.call("cold", "textDocument/inlineCompletion", {
        "textDocument": {"uri": uri}, "position": {"line": LINE, "character": COL + 3},
        "context": {"triggerKind": 2}}, timeout=120)
    return time.monotonic() - start


TYPED = "    total = compute(value, limit)\n    if total > limit:\n        return total\n"


def storm(srv: WireServer, uri: str, round_no: int, keys: int, interval_s: float, cancel: bool,
          cursor: list[int]) -> dict[str, Any]:
    """`keys` keystrokes of ordinary code at `cursor` ([line, col], moved along), a request after
    each; the answers are awaited at the end."""
    sent: dict[str, float] = {}
    previous = ""
    for i in range(keys):
        if cancel and previous:
            srv.send({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": previous}})
        char = TYPED[i % len(TYPED)]
        line, col = cursor[:2]
        cursor_version = cursor[2] = cursor[2] + 1
        srv.send({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
            "textDocument": {"uri": uri, "version": cursor_version},
            "contentChanges": [{"range": {"start": {"line": line, "character": col},
                                          "end": {"line": line, "character": col}}, "text": char}]}})
        cursor[:2] = [line + 1, 0] if char == "\n" else [line, col + 1]
        previous = f"r{round_no}-{i}"
        sent[previous] = time.monotonic()
        srv.request(previous, "textDocument/inlineCompletion", {
            "textDocument": {"uri": uri}, "position": {"line": cursor[0], "character": cursor[1]},
            "context": {"triggerKind": 2}})
        time.sleep(interval_s)
    last_key = time.monotonic()
    try:
        srv.wait_for(lambda _: all(srv.responses(i) for i in sent), timeout=300)
    except TimeoutError:
        pass
    answered = {i: srv.responses(i) for i in sent}
    times = {i: _answer_time(srv, i) - sent[i] for i, r in answered.items() if r}
    final_at = _answer_time(srv, previous) if answered[previous] else float("nan")
    idle_s = _idle_after(srv, final_at if answered[previous] else last_key)
    return {"cancel": cancel, "sent": keys, "answered": sum(1 for r in answered.values() if r),
            "worst_answer_s": round(max(times.values(), default=float("nan")), 3),
            "final_after_last_key_s": round(final_at - last_key, 3), "idle_after_final_s": round(idle_s, 2)}


def _answer_time(srv: WireServer, msg_id: str) -> float:
    return srv.answered_at.get(msg_id, float("nan"))


class TimedWireServer(WireServer):
    """WireServer that notes when each response arrived."""

    def __init__(self, home: Path) -> None:
        self.answered_at: dict[Any, float] = {}
        super().__init__(home)

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        import json

        try:
            while True:
                length = 0
                while (line := stdout.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                if not line:
                    return
                message = json.loads(stdout.read(length))
                with self._changed:
                    if "id" in message and "method" not in message:
                        self.answered_at.setdefault(message["id"], time.monotonic())
                    self.messages.append(message)
                    self._changed.notify_all()
        except (OSError, ValueError):
            return


def run_storms(model: str, keys: int, rounds: int, interval_s: float) -> dict[str, Any]:
    """`rounds` storms on one server, alternately with and without cancel; RSS after each."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        root.mkdir()
        (root / "main.py").write_text(SOURCE)
        srv = TimedWireServer(Path(tmp))
        try:
            options = {"model": {"path": model}, "completion": {"backgroundTokens": 16}}
            srv.initialize(root, options)
            uri = (root / "main.py").as_uri()
            srv.send({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {
                "uri": uri, "languageId": "python", "version": 1, "text": SOURCE}}})
            srv.call("warm", "textDocument/inlineCompletion", {
                "textDocument": {"uri": uri}, "position": {"line": 0, "character": 0},
                "context": {"triggerKind": 1}}, timeout=300)
            cold = min(cold_generation_s(srv, uri) for _ in range(1))
            rows = []
            cursor = [SOURCE.count("\n"), 0, 2_000_000]  # line, column, document version
            for r in range(rounds):
                row = storm(srv, uri, r, keys, interval_s, cancel=r % 2 == 0, cursor=cursor)
                totals = _totals(srv, r)
                worker = [p for p in _tree(srv.proc.pid) if p != srv.proc.pid]
                row.update(in_flight_max=totals["in_flight_max"], generations_started=totals["generations_started"],
                           server_rss_mb=round(_rss_mb(srv.proc.pid), 1),
                           worker_rss_mb=round(sum(_rss_mb(p) for p in worker), 1))
                rows.append(row)
                print(f"storm {r + 1}/{rounds}: {row}", flush=True)
            return {"cold_generation_s": round(cold, 3), "rounds": rows, "totals": _totals(srv, 99)}
        finally:
            srv.close()


def run_fuzz() -> dict[str, Any]:
    """tests/test_fuzz.py's property-based run (1,100 messages) against a real server."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
                           str(TESTS / "test_fuzz.py")], capture_output=True, text=True, cwd=BENCH.parent)
    found = re.search(r"fuzz: (\d+) messages, (\d+) requests answered", proc.stdout)
    return {"survived": proc.returncode == 0, "messages": int(found.group(1)) if found else 0,
            "requests": int(found.group(2)) if found else 0}


def run_faults() -> list[dict[str, Any]] | None:
    """bench/faults.py's remote fault matrix, when that benchmark exists."""
    if not (BENCH / "faults.py").is_file():
        return None
    import faults

    return faults.run_fault_matrix()


def run_churn() -> dict[str, Any]:
    """10,000+ file operations while the watcher cannot keep up; then probes of the index."""
    from codeflow.context.engine import ContextEngine, EngineConfig

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_old_files(root)
        engine = ContextEngine([root], EngineConfig(use_cache=False))
        engine.start(watch=True)
        engine.wait_ready(60)
        start = time.monotonic()
        churn_while_starved(root, hold=60_000_000)  # the event reader falls behind
        names = settle(engine, start + 60)
        settled = time.monotonic() - start
        overflows = engine._watcher.overflows if engine._watcher else 0
        engine.stop()
    probes = [f"Fresh{i}" for i in range(0, 300, 10)] + [f"Old{i}" for i in range(0, OLD_FILES, 10)]
    right = sum((p in names) == (p in SETTLED) for p in probes)
    return {"operations": OPERATIONS, "overflows": overflows, "probes_right": right,
            "probes": len(probes), "settled_s": round(settled, 2), "survived": right == len(probes)}


def _model(arg: str, tmp: Path) -> str:
    if arg == "default":
        return ""
    if arg:
        return arg
    path = tmp / "printable.gguf"
    write_tiny_gguf(path, byte_output=False, n_embd=256, n_layer=4, n_ff=512)
    return str(path)


def markdown(data: dict[str, Any]) -> str:
    """The README section."""
    storms = data["storms"]
    rounds = storms["rounds"]
    first_rss = rounds[0]["server_rss_mb"]
    rows = [(f"storm {i + 1} ({'cancel' if r['cancel'] else 'no cancel'})", f"{r['answered']} / {r['sent']}",
             r["worst_answer_s"], f"{r['final_after_last_key_s']} (cold {storms['cold_generation_s']})",
             r["in_flight_max"], r["idle_after_final_s"],
             f"{r['server_rss_mb']} ({r['server_rss_mb'] - first_rss:+.1f}); worker {r['worker_rss_mb']}", "")
            for i, r in enumerate(rounds)]
    fuzz = data["fuzz"]
    rows.append(("fuzz", f"{fuzz['requests']} / {fuzz['requests']}" if fuzz["survived"] else "failed",
                 "", "", "", "", "", f"{int(fuzz['survived'])} / 1"))
    faults = data["faults"]
    rows.append(("remote faults", "", max((f["worst_answer_s"] for f in faults), default="") if faults else "",
                 "", "", "", "", f"{sum(f['survived'] for f in faults)} / {len(faults)}" if faults else "skipped"))
    churn = data["churn"]
    rows.append(("workspace churn", f"{churn['probes_right']} / {churn['probes']} probes", "",
                 f"index right after {churn['settled_s']} s", "", "", f"{churn['overflows']} overflows",
                 f"{int(churn['survived'])} / 1"))
    header = ("row", "answered / sent", "worst answer s", "final after last key s", "in flight max",
              "idle after s", "server RSS MB", "faults survived")
    return (f"## Soak\n\n`codeflow bench soak` (bench/soak.py); raw figures in `results/soak.json`. "
            f"Model: {data['model']}; {data['keys']} keystrokes per storm, {data['interval_ms']} ms apart, "
            "through `codeflow serve` over stdio.\n\n" + table(rows, header) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run every row and write results/soak.json and the README section."""
    parser = argparse.ArgumentParser(prog="codeflow bench soak")
    parser.add_argument("--model", default="", help="a GGUF, or 'default'; a tiny random GGUF if empty")
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--interval-ms", type=float, default=30.0)
    parser.add_argument("--skip", default="", help="comma-separated rows to skip: fuzz,faults,churn")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory() as tmp:
        model = _model(args.model, Path(tmp))
        data: dict[str, Any] = {"model": args.model or "tiny random GGUF (4 layers, 256 wide)",
                                "keys": args.keys, "interval_ms": args.interval_ms}
        data["storms"] = run_storms(model, args.keys, args.rounds, args.interval_ms / 1000)
    data["fuzz"] = run_fuzz() if "fuzz" not in skip else {"survived": False, "requests": 0, "skipped": True}
    data["faults"] = run_faults() if "faults" not in skip else None
    data["churn"] = run_churn() if "churn" not in skip else {"probes_right": 0, "probes": 0, "settled_s": 0,
                                                              "overflows": 0, "survived": False}
    print(markdown(data))
    write("soak", data, markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
