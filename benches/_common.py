"""Shared helpers: best-of timing and a peak-RSS sampler (reads /proc, no dependency)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Samples the resident set every millisecond; `.growth` is peak minus the RSS at entry."""

    def __enter__(self) -> PeakRss:
        self.base = rss_bytes()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())

    @property
    def growth(self) -> int:
        return self.peak - self.base


def best_of(fn: Callable[[], object], repeat: int = 3, before: Callable[[], object] | None = None) -> float:
    """Smallest wall time of `repeat` runs of `fn` (calling `before` untimed before each)."""
    best = float("inf")
    for _ in range(repeat):
        if before is not None:
            before()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


MiB = 1 << 20
GB = 1e9
