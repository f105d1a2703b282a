"""A watchdog observer that hands changed paths to a callback in debounced batches."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

DEBOUNCE_S = 0.15


class Watcher(FileSystemEventHandler):
    """Collects changed paths from watchdog's thread; a worker flushes them after a quiet spell."""

    def __init__(self, roots: list[Path], on_batch: Callable[[set[str]], None],
                 debounce_s: float = DEBOUNCE_S) -> None:
        self.roots = roots
        self.on_batch = on_batch
        self.debounce_s = debounce_s
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

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            # Debounce: wait until no event arrived for a whole quiet spell.
            while self._wake.is_set() and not self._stop.is_set():
                self._wake.clear()
                self._stop.wait(self.debounce_s)
            with self._lock:
                batch, self._pending = self._pending, set()
            if batch and not self._stop.is_set():
                self.on_batch(batch)

    def start(self) -> None:
        """Start watching every root recursively."""
        for root in self.roots:
            self._observer.schedule(self, str(root), recursive=True)
        self._observer.start()
        self._worker.start()

    def stop(self) -> None:
        """Stop the observer and the batch worker."""
        self._stop.set()
        self._wake.set()
        self._observer.stop()
        self._observer.join(timeout=5)
        self._worker.join(timeout=5)
