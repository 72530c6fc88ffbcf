"""Progress lines of the long steps of an export (loading, packing tensors, writing the archive).

Each step logs at most one line every :data:`PROGRESS_INTERVAL_S` seconds, so that a large model
shows signs of life without flooding the log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["PROGRESS_INTERVAL_S", "Progress", "format_size", "report_writing", "writing_reported"]

LOGGER = logging.getLogger(__name__)

PROGRESS_INTERVAL_S = 5.0
"""Least time between two progress lines of one step (loading, tracing, packing, writing)."""


def format_size(nbytes: float) -> str:
    """``nbytes`` for a log line: ``"1.2 GB"``."""
    for unit in ("B", "kB", "MB", "GB"):
        if nbytes < 1000 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


class Progress:
    """Logs ``"<verb> i/n <what> (size)"`` as steps are done.

    At most one line every :data:`PROGRESS_INTERVAL_S` seconds, and always the last.
    """

    def __init__(self, verb: str, total: int, what: str) -> None:
        self.verb, self.total, self.what = verb, total, what
        self.done = 0
        self.nbytes = 0
        self.started = time.monotonic()
        self._last = self.started

    def step(self, nbytes: int) -> None:
        """Counts one more step of ``nbytes`` bytes."""
        self.done += 1
        self.nbytes += nbytes
        now = time.monotonic()
        if self.done == self.total or now - self._last >= PROGRESS_INTERVAL_S:
            self._last = now
            LOGGER.info(
                "%s %d/%d %s (%s) in %.1f s",
                self.verb,
                self.done,
                self.total,
                self.what,
                format_size(self.nbytes),
                now - self.started,
            )


def report_writing(archive: Path, total: int, stop: threading.Event) -> None:
    """Logs the size of the archive being written (its temporary file) until ``stop`` is set."""
    started = time.monotonic()
    while not stop.wait(max(PROGRESS_INTERVAL_S, 0.01)):
        written = 0
        for partial in archive.parent.glob(f".{archive.name}.*partial"):
            try:
                written += partial.stat().st_size
            except OSError:  # renamed into place meanwhile
                pass
        LOGGER.info(
            "writing %s: %s of about %s in %.1f s",
            archive.name,
            format_size(written),
            format_size(total),
            time.monotonic() - started,
        )


@contextmanager
def writing_reported(archive: Path, total: int) -> Iterator[None]:
    """Runs :func:`report_writing` in a thread while the body writes ``archive`` (about ``total`` bytes)."""
    stop = threading.Event()
    watcher = threading.Thread(target=report_writing, args=(archive, total, stop), daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
