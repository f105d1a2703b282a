"""A watchdog observer that hands changed paths to a callback in debounced batches, and says
when the kernel dropped events (inotify queue overflow) so that the caller can rescan."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

DEBOUNCE_S = 0.15
# watchdog tells of a kernel queue overflow only in this log record (watchdog 7.1: inotify_c's
# handle_event logs it, then rebuilds its watches); no event reaches the handler.
OVERFLOW_LOGGER = "watchdog.observers.inotify_c"
OVERFLOW_TEXT = "queue overflowed"


class _OverflowSpy(logging.Handler):
    """Hears watchdog's overflow warning and tells the watcher."""

    def __init__(self, on_overflow: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.on_overflow = on_overflow

    def emit(self, record: logging.LogRecord) -> None:
        if OVERFLOW_TEXT in record.getMessage():
            self.on_overflow()


class Watcher(FileSystemEventHandler):
    """Collects changed paths from watchdog's thread; a worker flushes them after a quiet spell."""

    def __init__(self, roots: list[Path], on_batch: Callable[[set[str]], None],
                 debounce_s: float = DEBOUNCE_S, on_overflow: Callable[[], None] | None = None) -> None:
        self.roots = roots
        self.on_batch = on_batch
        self.on_overflow = on_overflow
        self.debounce_s = debounce_s
        self.overflows = 0
        self._overflowed = False
        self._spy = _OverflowSpy(self._lost_events)
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._observer = Observer()
        self._worker = threading.Thread(target=self._run, name="codeflow-watch-batches", daemon=True)

    def on_any_event(self, event: FileSystemEvent) -> None:
        """Record the paths an event touches (both ends of a move)."""
        if event.event_type in ("opened", "closed_no_write") or (
                event.is_directory and event.event_type == "modified"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "")]
        with self._lock:
            self._pending.update(str(p) for p in paths if p)
        self._wake.set()

    def _lost_events(self) -> None:
        """On watchdog's thread: events were dropped; rescan after the storm (see `_run`)."""
        with self._lock:
            self.overflows += 1
            self._overflowed = True
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            # Debounce: wait until no event arrived for a whole quiet spell.
            while self._wake.is_set() and not self._stop.is_set():
                self._wake.clear()
                self._stop.wait(self.debounce_s)
            with self._lock:
                batch, self._pending = self._pending, set()
                overflowed, self._overflowed = self._overflowed, False
            if self._stop.is_set():
                return
            if overflowed and self.on_overflow is not None:
                self.on_overflow()  # a rescan covers the batch's paths too
            elif batch:
                self.on_batch(batch)

    def start(self) -> None:
        """Start watching every root recursively."""
        logger = logging.getLogger(OVERFLOW_LOGGER)
        logger.addHandler(self._spy)
        if not logger.isEnabledFor(logging.WARNING):  # quieted by the host: the warning must pass
            logger.setLevel(logging.WARNING)
        for root in self.roots:
            self._observer.schedule(self, str(root), recursive=True)
        self._observer.start()
        self._worker.start()

    def stop(self) -> None:
        """Stop the observer and the batch worker."""
        logging.getLogger(OVERFLOW_LOGGER).removeHandler(self._spy)
        self._stop.set()
        self._wake.set()
        self._observer.stop()
        self._observer.join(timeout=5)
        self._worker.join(timeout=5)
