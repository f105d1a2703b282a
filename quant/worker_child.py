"""The model worker process: `python -m codeflow.quant.worker_child`, driven by `WorkerBackend`.

Threads: a reader takes messages from stdin (a cancel lands at once, even mid-generation), the
main thread runs generations one at a time, and a counter thread answers token counts so they
never wait behind a long generation.
"""

from __future__ import annotations

import importlib
import os
import queue
import sys
import threading
from typing import Any

from .backend import CancelToken
from .errors import ModelLoadError
from .lookup import LookupTally
from .worker_protocol import (
    Cancel,
    Channel,
    Count,
    Counted,
    Done,
    Failed,
    Generate,
    Load,
    Loaded,
    Piece,
    Shutdown,
    ToWorker,
)


def _failure(request_id: int, exc: BaseException) -> Failed:
    if isinstance(exc, ModelLoadError):
        return Failed(id=request_id, error="ModelLoadError", message=str(exc), path=exc.path, reason=exc.reason)
    return Failed(id=request_id, error=type(exc).__name__, message=str(exc))


def _build(load: Load) -> Any:
    module_name, _, attr = load.factory.partition(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(load.model_path, **load.kwargs)


class _Worker:
    """The loaded backend and the queues that feed it."""

    def __init__(self, channel: Channel, backend: Any) -> None:
        self.channel = channel
        self.backend = backend
        self.jobs: queue.Queue[Generate | None] = queue.Queue()
        self.counts: queue.Queue[Count | None] = queue.Queue()
        self.tokens: dict[int, CancelToken] = {}
        self.lock = threading.Lock()

    def read_loop(self) -> None:
        """Dispatch incoming messages until shutdown; a vanished parent ends the process."""
        while True:
            message = self.channel.receive()
            if message is None:
                os._exit(0)  # the server is gone: nobody will read what this process makes
            if isinstance(message, Generate):
                with self.lock:
                    self.tokens[message.id] = CancelToken()
                self.jobs.put(message)
            elif isinstance(message, Cancel):
                with self.lock:
                    token = self.tokens.get(message.id)
                if token is not None:
                    token.cancel()
            elif isinstance(message, Count):
                self.counts.put(message)
            elif isinstance(message, Shutdown):
                with self.lock:
                    for token in self.tokens.values():
                        token.cancel()
                self.jobs.put(None)
                self.counts.put(None)
                return

    def count_loop(self) -> None:
        """Answer token counts beside the generation thread."""
        while (job := self.counts.get()) is not None:
            try:
                self.channel.send(Counted(id=job.id, n=self.backend.count_tokens(job.text)))
            except Exception as exc:  # reported to the caller, who raises it
                self.channel.send(_failure(job.id, exc))

    def generate(self, job: Generate) -> None:
        """Run one generation, streaming each piece back as it comes."""
        with self.lock:
            token = self.tokens[job.id]
        # LocalBackend counts its draft tokens; a backend without prompt lookup has no tally.
        tally = getattr(self.backend, "lookup_tally", None) or LookupTally()
        drafted, accepted = tally.drafted, tally.accepted
        try:
            if not token.cancelled:
                for text in self.backend.stream(job.prompt, job.opts, token):
                    self.channel.send(Piece(id=job.id, text=text))
            self.channel.send(Done(id=job.id, tokens_after_cancel=token.tokens_after_cancel,
                                   drafted=tally.drafted - drafted, accepted=tally.accepted - accepted))
        except Exception as exc:
            self.channel.send(_failure(job.id, exc))
        finally:
            with self.lock:
                self.tokens.pop(job.id, None)


def main() -> int:
    """Load the model named by the first message, then serve requests until shutdown."""
    protocol_out = os.fdopen(os.dup(1), "wb")
    # llama.cpp or a library may print to fd 1; that must not corrupt the message stream.
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    channel = Channel(sys.stdin.buffer, protocol_out, ToWorker)
    load = channel.receive()
    if not isinstance(load, Load):
        return 2
    try:
        backend = _build(load)
    except Exception as exc:
        channel.send(_failure(0, exc))
        return 1
    channel.send(Loaded(info=backend.info))
    worker = _Worker(channel, backend)
    threading.Thread(target=worker.read_loop, name="worker-reader", daemon=True).start()
    threading.Thread(target=worker.count_loop, name="worker-counter", daemon=True).start()
    while (job := worker.jobs.get()) is not None:
        worker.generate(job)
    backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
