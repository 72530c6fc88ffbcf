"""Q4_0 of a 4096x14336 f32 weight: our kernel (1 thread, all cores) vs tract-linalg's quantizer,
a vectorized numpy implementation of the same formula, and a plain memory copy (numpy `copy`).
Reports GB/s of f32 input and ratios, measured side by side."""

from __future__ import annotations

import os

import numpy as np

from _common import GB, MiB, PeakRss, best_of
from torch_to_nnef import quantize_q4_0
from torch_to_nnef.io.q4_0 import tract_reference_q4_0


def numpy_q4_0(w: np.ndarray) -> bytes:
    x = w.reshape(-1, 32)
    m = x[np.arange(len(x)), np.abs(x).argmax(axis=1)]
    d = m / np.float32(-8)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    q = np.minimum((x * inv[:, None] + np.float32(8.5)).astype(np.int8), 15).astype(np.uint8)
    packed = q[:, :16] | (q[:, 16:] << 4)
    scales = d.astype(np.float16).view(np.uint8).reshape(-1, 2)
    return np.concatenate([scales, packed], axis=1).tobytes()


def main() -> None:
    w = np.random.default_rng(0).standard_normal((4096, 14336), dtype=np.float32)
    n = w.nbytes
    cores = os.cpu_count() or 1
    ours_all = quantize_q4_0(w).to_bytes()
    assert ours_all == tract_reference_q4_0(w) == numpy_q4_0(w), "implementations disagree"
    times = {
        "memory copy (numpy)": best_of(lambda: w.copy()),
        f"ours, {cores} threads": best_of(lambda: quantize_q4_0(w)),
        "ours, 1 thread": best_of(lambda: quantize_q4_0(w, threads=1)),
        "tract-linalg, 1 thread": best_of(lambda: tract_reference_q4_0(w)),
        "numpy vectorized": best_of(lambda: numpy_q4_0(w), repeat=1),
    }
    for name, t in times.items():
        print(f"{name:>24}: {n / t / GB:6.2f} GB/s of f32 input ({t * 1e3:7.1f} ms)")
    one, allc = times["ours, 1 thread"], times[f"ours, {cores} threads"]
    print(f"ours 1 thread vs tract: {times['tract-linalg, 1 thread'] / one:.2f}x (goal >= 1)")
    print(f"ours all cores vs ours 1 thread: {one / allc:.2f}x (goal >= 1.8x on 2 cores)")
    print(f"ours all cores vs numpy: {times['numpy vectorized'] / allc:.1f}x (goal >= 20x)")
    print(f"ours all cores vs memory copy: {allc / times['memory copy (numpy)']:.2f}x the copy's time (goal <= 2x)")
    with PeakRss() as rss:
        quantize_q4_0(w)
    print(f"peak RSS growth while quantizing: {rss.growth / MiB:.1f} MiB (output is {len(ours_all) / MiB:.1f} MiB)")


if __name__ == "__main__":
    main()
