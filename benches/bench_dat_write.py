"""Writing .dat files vs numpy's `tofile`, side by side in one process.

1. one 1 GiB f32 tensor: write_dat vs ndarray.tofile (goal >= 0.95x its throughput);
2. 2 GiB over 200 tensors: write_dats (parallel) vs tofile one after another (goal >= 1.3x);
3. peak RSS growth while writing (goal < 64 MiB: no copies).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from _common import MiB, PeakRss, best_of
from torch_to_nnef import write_dat, write_dats


def clean(root: Path) -> None:
    for p in root.glob("*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()


def one_big_tensor(root: Path) -> None:
    big = np.random.default_rng(0).standard_normal(1 << 28, dtype=np.float32)  # 1 GiB
    size = big.nbytes
    t_np = best_of(lambda: big.tofile(root / "np.raw"), before=lambda: clean(root))
    t_us = best_of(lambda: write_dat(root / "ours.dat", big), before=lambda: clean(root))
    clean(root)
    with PeakRss() as rss_one:
        write_dat(root / "ours.dat", big)
    print(
        f"1 GiB f32: numpy tofile {size / t_np / 1e9:.2f} GB/s, write_dat {size / t_us / 1e9:.2f} GB/s, "
        f"ratio {t_np / t_us:.2f}x (goal >= 0.95x); peak RSS growth {rss_one.growth / MiB:.1f} MiB"
    )


def many_tensors(root: Path) -> None:
    rng = np.random.default_rng(1)
    per = (2 << 30) // 200 // 4
    many = {f"layer{i:03d}/weight": rng.standard_normal(per, dtype=np.float32) for i in range(200)}
    total = sum(a.nbytes for a in many.values())

    def numpy_loop() -> None:
        (root / "np").mkdir()
        for i, a in enumerate(many.values()):
            a.tofile(root / "np" / f"{i}.raw")

    t_np = best_of(numpy_loop, before=lambda: clean(root))
    t_us = best_of(lambda: write_dats(root / "ours", many), before=lambda: clean(root))
    clean(root)
    with PeakRss() as rss_many:
        write_dats(root / "ours", many)
    print(
        f"2 GiB in 200 tensors: numpy loop {total / t_np / 1e9:.2f} GB/s, write_dats {total / t_us / 1e9:.2f} GB/s, "
        f"ratio {t_np / t_us:.2f}x (goal >= 1.3x); peak RSS growth {rss_many.growth / MiB:.1f} MiB (goal < 64)"
    )


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="t2n-bench-", dir=os.environ.get("BENCH_DIR", "/tmp")))
    try:
        one_big_tensor(root)
        many_tensors(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
