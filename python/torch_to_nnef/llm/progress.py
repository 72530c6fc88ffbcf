"""Progress lines of the long steps of an export (loading, packing tensors, writing the archive).

Each step logs at most one line every :data:`PROGRESS_INTERVAL_S` seconds, so that a large model
shows signs of life without flooding the log.
"""

from __future__ import annotations

import logging
import re
import resource
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

__all__ = [
    "PROGRESS_INTERVAL_S",
    "available_memory",
    "MemoryWatch",
    "Progress",
    "WriteProgress",
    "format_duration",
    "format_size",
    "report_writing",
    "writing_reported",
]

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


def format_duration(seconds: float) -> str:
    """``seconds`` for a log line: ``"42 s"``, ``"3 min 20 s"``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


class WriteProgress:
    """Logs the tensors and bytes written of an archive whose size is known ahead, with the rate
    and the time left: ``"wrote 120/291 tensors, 3.2 GB of 5.3 GB (410 MB/s), about 5 s left"``.

    At most one line every :data:`PROGRESS_INTERVAL_S` seconds, and always the last.
    """

    def __init__(self, archive: str, tensors: int, nbytes: int) -> None:
        self.archive, self.tensors, self.nbytes = archive, tensors, nbytes
        self.started = time.monotonic()
        self._last = self.started

    def step(self, done: int, written: int) -> None:
        """``done`` tensors and ``written`` bytes are written."""
        now = time.monotonic()
        if done != self.tensors and now - self._last < PROGRESS_INTERVAL_S:
            return
        self._last = now
        elapsed = max(now - self.started, 1e-9)
        rate = written / elapsed
        left = f", about {format_duration((self.nbytes - written) / rate)} left" if done < self.tensors and rate else ""
        LOGGER.info(
            "%s: wrote %d/%d tensors, %s of %s (%s/s)%s",
            self.archive,
            done,
            self.tensors,
            format_size(written),
            format_size(self.nbytes),
            format_size(rate),
            left,
        )


def _status_kib(field: str) -> int | None:
    """A memory field of ``/proc/self/status`` in KiB (None where there is no such file)."""
    try:
        with open("/proc/self/status") as status:
            found = re.search(rf"^{field}:\s+(\d+) kB", status.read(), re.MULTILINE)
    except OSError:
        return None
    return int(found[1]) if found else None


def available_memory() -> int | None:
    """Bytes of memory the system can give without swapping (``MemAvailable``), None where it does
    not say.
    """
    try:
        with open("/proc/meminfo") as meminfo:
            found = re.search(r"^MemAvailable:\s+(\d+) kB", meminfo.read(), re.MULTILINE)
    except OSError:
        return None
    return int(found[1]) * 1024 if found else None


class MemoryWatch:
    """The process's peak memory over a block: anonymous memory (its own data, not the pages of
    the files it reads or maps), sampled every :attr:`interval` seconds on Linux, and the peak
    resident memory the system recorded.
    """

    interval = 0.05

    def __init__(self) -> None:
        self.peak_anonymous: int | None = None
        """Bytes, None where the system does not say."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def peak_resident(self) -> int:
        """Bytes: the peak resident memory of the process's whole life (files' pages included)."""
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024

    def _sample(self) -> None:
        anonymous = _status_kib("RssAnon")
        if anonymous is not None:
            self.peak_anonymous = max(self.peak_anonymous or 0, anonymous * 1024)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def describe(self) -> str:
        """``"1.2 GB anonymous, 1.9 GB resident"``."""
        resident = f"{format_size(self.peak_resident)} resident"
        if self.peak_anonymous is None:
            return resident
        return f"{format_size(self.peak_anonymous)} anonymous, {resident}"

    def __enter__(self) -> MemoryWatch:
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()


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
