"""The remote fault matrix (issue 12): each fault of a misbehaving OpenAI-compatible endpoint, and
whether Codeflow survived it: answered within its deadline, showed no incomplete text, and
answered normally once the endpoint behaved again.

`run_fault_matrix()` is what `codeflow bench soak` calls; `codeflow bench faults` prints it.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from fault_server import FaultServer, StalledListener  # noqa: E402

from codeflow.lsp_server.assistant.completion import Cancelled, CompletionRequest, CompletionService  # noqa: E402
from codeflow.lsp_server.settings import RemoteSettings, Settings  # noqa: E402
from codeflow.quant.backend import CancelToken  # noqa: E402
from codeflow.quant.fallback import FallbackBackend  # noqa: E402
from codeflow.quant.remote import RemoteBackend  # noqa: E402

DEADLINE_S = 2.0
# An answer counts as on time within the deadline plus this (a last read slice, the close).
SLACK_S = 1.0
CANCEL_AFTER_S = 0.3
# (name, fault server mode, cancel the request after CANCEL_AFTER_S)
FAULTS: tuple[tuple[str, str, bool], ...] = (
    ("hang before headers", "hang_headers", False),
    ("hang mid-stream", "hang_stream", False),
    ("cancel while waiting for headers", "hang_headers", True),
    ("cancel mid-stream", "hang_stream", True),
    ("cancel while connecting", "connect", True),
    ("drip, 1 token/s", "drip", False),
    ("flood past max_tokens", "flood", False),
    ("flood of empty chunks", "flood_empty", False),
    ("cut before [DONE]", "truncated", False),
    ("malformed chunk", "malformed", False),
    ("connection dropped mid-chunk", "drop", False),
    ("HTTP 500", "error500", False),
    ("HTTP 429", "error429", False),
    ("first byte after the deadline", "slow", False),
)
REQUEST = CompletionRequest(key="bench", path="a.py", language="python", prefix="x = ", suffix="")


def _service(url: str) -> tuple[CompletionService, FallbackBackend]:
    remote = RemoteSettings(url=url, model="tiny-model", retries=2, read_timeout_s=30.0,
                            completion_deadline_s=DEADLINE_S)
    settings = Settings(backend="remote", remote=remote)
    backend = FallbackBackend(lambda: RemoteBackend(remote), None, lambda status: None, primary_kind="remote")
    return CompletionService(lambda: backend, settings), backend


def _ask(service: CompletionService, cancel_after: float | None) -> tuple[float, str, str]:
    """(seconds to the answer, the text shown, the error) for one completion."""
    cancel = CancelToken()
    if cancel_after is not None:
        threading.Timer(cancel_after, cancel.cancel).start()
    started = time.monotonic()
    try:
        text, error = service.complete(REQUEST, cancel).text, ""
    except Cancelled:
        text, error = "", "cancelled"
    except Exception as exc:  # a failure is an answer too; it is recorded
        text, error = "", f"{type(exc).__name__}: {exc}"
    return time.monotonic() - started, text, error


def run_fault(name: str, mode: str, cancel: bool) -> dict[str, Any]:
    """One fault: ask through it, then ask again with the endpoint healthy."""
    fault = FaultServer()
    stalled = StalledListener() if mode == "connect" else None
    service, backend = _service(stalled.url if stalled else fault.url)
    try:
        backend.start()
        fault.mode, fault.delay_s = ("ok" if mode == "connect" else mode), (1.0 if mode == "drip" else 5.0)
        limit = CANCEL_AFTER_S + 1.0 if cancel else DEADLINE_S + SLACK_S
        seconds, shown, error = _ask(service, CANCEL_AFTER_S if cancel else None)
        service.wait_idle(timeout=DEADLINE_S + SLACK_S)
        chunks = fault.sent_pieces
        fault.mode = "ok"
        # A stalled listener never answers again: recovery is not asked of it (None).
        recovered = None if stalled is not None else _ask(service, None)[1] != ""
        incomplete = mode in ("truncated", "malformed", "drop", "flood_empty", "hang_stream", "drip")
        survived = seconds <= limit and not (incomplete and shown) and recovered is not False
        return {"name": name, "survived": survived, "worst_answer_s": round(seconds, 3), "shown": shown[:80],
                "error": error[:200], "recovered": recovered, "chunks_sent": chunks}
    finally:
        backend.close()
        fault.close()
        if stalled is not None:
            stalled.close()


def run_fault_matrix(faults: tuple[tuple[str, str, bool], ...] = FAULTS) -> list[dict[str, Any]]:
    """Every fault of FAULTS: name, survived, worst_answer_s (and details)."""
    return [run_fault(name, mode, cancel) for name, mode, cancel in faults]


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    """Print the matrix as JSON lines and a summary; exit status 1 when a fault was not survived."""
    rows = run_fault_matrix()
    for row in rows:
        out(json.dumps(row))
    survived = sum(row["survived"] for row in rows)
    worst = max(row["worst_answer_s"] for row in rows)
    out(f"faults survived: {survived}/{len(rows)}; worst answer {worst:.2f}s (deadline {DEADLINE_S}s)")
    return 0 if survived == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
