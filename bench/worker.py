"""Benchmark: the model worker process boundary against in-process generation.

`measure_boundary` runs the same prompt for the same tokens through `LocalBackend` in this process
and through `WorkerBackend` (a child process), alternating, and reports the time ratio.
`compare_channels` times a one-piece round trip over the two ways to talk to a child process
that were considered: msgspec msgpack frames over subprocess pipes (used) and a multiprocessing
"spawn" Pipe (pickle).

Run: `codeflow bench worker [MODEL.gguf] [--runs N] [--tokens N]`.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from report import table, write

from codeflow.quant.backend import CancelToken, GenOptions, Prompt
from codeflow.quant.worker import WorkerBackend
from codeflow.quant.worker_protocol import Channel, Piece

PROMPT = "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n"


def _timed_run(backend: Any, opts: GenOptions, key: str) -> tuple[float, str]:
    started = time.perf_counter()
    text = "".join(backend.stream(Prompt(text=PROMPT, key=key), opts, CancelToken()))
    return time.perf_counter() - started, text


def measure_boundary(
    model_path: str, n: int = 5, *, max_tokens: int = 32, n_ctx: int = 512, n_threads: int = 1
) -> dict[str, Any]:
    """Median generation time through the worker over in-process, same prompt and tokens."""
    from codeflow.quant.local import LocalBackend

    kwargs = {"n_ctx": n_ctx, "n_gpu_layers": 0, "n_threads": n_threads}
    local = LocalBackend(model_path, **kwargs)
    started = time.perf_counter()
    worker = WorkerBackend(model_path, **kwargs)
    startup_s = time.perf_counter() - started
    opts = GenOptions(max_tokens=max_tokens, temperature=0.0)
    try:
        _timed_run(local, opts, "warm")
        _timed_run(worker, opts, "warm")
        local_s, worker_s, texts = [], [], set()
        for i in range(n):
            # A new key each time: neither side may reuse a warm KV state from the last run.
            t, a = _timed_run(local, opts, f"run{i}")
            u, b = _timed_run(worker, opts, f"run{i}")
            local_s.append(t)
            worker_s.append(u)
            texts |= {a, b}
        pieces = worker.count_tokens(texts.pop()) if len(texts) == 1 else -1
    finally:
        worker.close()
        local.close()
    in_proc, via_worker = statistics.median(local_s), statistics.median(worker_s)
    return {
        "model": str(model_path),
        "runs": n,
        "max_tokens": max_tokens,
        "n_threads": n_threads,
        "same_output": pieces >= 0,
        "output_tokens": pieces,
        "in_process_s": round(in_proc, 5),
        "worker_s": round(via_worker, 5),
        "ratio": round(via_worker / in_proc, 4),
        "overhead_per_token_us": round((via_worker - in_proc) / max(1, pieces) * 1e6, 1),
        "worker_startup_s": round(startup_s, 3),
    }


_ECHO = (
    "import sys\n"
    "from codeflow.quant.worker_protocol import Channel, FromWorker\n"
    "ch = Channel(sys.stdin.buffer, sys.stdout.buffer, FromWorker)\n"
    "while (m := ch.receive()) is not None: ch.send(m)\n"
)


def _pipe_echo(conn: Any) -> None:
    while True:
        try:
            conn.send(conn.recv())
        except EOFError:
            return


def compare_channels(n: int = 2000) -> dict[str, float]:
    """Median round trip, in microseconds, of one Piece over each channel kind."""
    message = Piece(id=1, text=" return")
    proc = subprocess.Popen([sys.executable, "-c", _ECHO], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin and proc.stdout
    channel = Channel(proc.stdout, proc.stdin, Piece)
    msgpack_us = _round_trips(lambda: (channel.send(message), channel.receive()), n)
    proc.stdin.close()
    proc.wait()
    # Spawn pickles the target by module name; under `codeflow bench` this file is loaded as
    # `bench_worker`, which a child cannot import, so take the target from `worker` (bench/).
    import worker as importable

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=importable._pipe_echo, args=(child,), daemon=True)
    process.start()
    pickle_us = _round_trips(lambda: (parent.send(message), parent.recv()), n)
    parent.close()
    process.join(5)
    return {"msgspec_pipes_us": msgpack_us, "multiprocessing_pipe_us": pickle_us}


def _round_trips(call: Any, n: int) -> float:
    for _ in range(50):
        call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return round(statistics.median(samples) * 1e6, 1)


def _markdown(result: dict[str, Any]) -> str:
    b, c = result["boundary"], result["channels"]
    rows = [
        ("in-process generation, median s", b["in_process_s"]),
        ("through the worker process, median s", b["worker_s"]),
        ("ratio worker / in-process", b["ratio"]),
        ("overhead per output token, us", b["overhead_per_token_us"]),
        ("worker start (spawn + load), s", b["worker_startup_s"]),
        ("one-piece round trip, msgspec frames over pipes (used), us", c["msgspec_pipes_us"]),
        ("one-piece round trip, multiprocessing spawn Pipe, us", c["multiprocessing_pipe_us"]),
        ("round trip / in-process time per token", result["ipc_share"]),
    ]
    return (
        "## Worker-process boundary\n\n"
        f"`codeflow bench worker`: {b['runs']} alternating runs of {b['max_tokens']} tokens on "
        f"`{Path(b['model']).name}` ({b['n_threads']} thread), same prompt and output (same_output={b['same_output']}).\n\n"
        + table(rows, ("measure", "value"))
    )


def main(argv: list[str] | None = None) -> int:
    """Measure, then save bench/results/worker.json and the README section."""
    parser = argparse.ArgumentParser(prog="codeflow bench worker")
    parser.add_argument("model", nargs="?", help="GGUF file (default: the embedded default model)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=32)
    # One thread by default: on a small shared CPU, two OpenMP threads stall each other.
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.model is None:
        from codeflow.quant.models import default_model_path

        args.model = str(default_model_path())
    result: dict[str, Any] = {
        "boundary": measure_boundary(args.model, args.runs, max_tokens=args.tokens, n_threads=args.threads),
        "channels": compare_channels(),
    }
    # The floor of the boundary's cost, free of the run-to-run noise in the two medians.
    per_token_s = result["boundary"]["in_process_s"] / max(1, result["boundary"]["output_tokens"])
    result["ipc_share"] = round(result["channels"]["msgspec_pipes_us"] * 1e-6 / per_token_s, 5)
    write("worker", result, _markdown(result))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
