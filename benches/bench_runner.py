"""Model load + run: our in-process runner vs the `tract` package from PyPI (ctypes bindings to
the same tract release), on the same archive, side by side."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tract

from _common import best_of
from torch_to_nnef import TRACT_VERSION, TractModel, write_nnef_archive

LAYERS, WIDTH, S = 6, 1024, 64


def graph() -> str:
    lines = [
        "version 1.0;",
        "",
        "graph mlp( input ) -> ( output )",
        "{",
        f"  input = external<scalar>(shape = [{S}, {WIDTH}]);",
    ]
    prev = "input"
    for i in range(LAYERS):
        lines += [
            f"  w{i} = variable<scalar>(label = 'l{i}/weight', shape = [{WIDTH}, {WIDTH}]);",
            f"  b{i} = variable<scalar>(label = 'l{i}/bias', shape = [1, {WIDTH}]);",
            f"  h{i} = linear({prev}, w{i}, b{i});",
            f"  r{i} = relu(h{i});",
        ]
        prev = f"r{i}"
    lines += [f"  output = copy({prev});", "}", ""]
    return "\n".join(lines)


def main() -> None:
    rng = np.random.default_rng(0)
    root = Path(tempfile.mkdtemp(prefix="t2n-bench-"))
    try:
        tensors = {}
        for i in range(LAYERS):
            tensors[f"l{i}/weight"] = (rng.standard_normal((WIDTH, WIDTH)) / 32).astype(np.float32)
            tensors[f"l{i}/bias"] = rng.standard_normal((1, WIDTH)).astype(np.float32)
        x = rng.standard_normal((S, WIDTH)).astype(np.float32)
        print(f"tract {TRACT_VERSION} (ours, in-process) vs tract {tract.version()} (PyPI, ctypes)")
        for name in ("mlp.nnef", "mlp.nnef.tar", "mlp.nnef.tgz"):
            path = write_nnef_archive(root / name, graph(), tensors, compression_level=1)

            def ours(path: Path = path) -> np.ndarray:
                return TractModel(path).run([x])[0]

            def pypi(path: Path = path) -> np.ndarray:
                model = tract.nnef().with_tract_transformers().with_pulse().load(str(path))
                return model.into_runnable().run([x])[0].to_numpy()

            np.testing.assert_allclose(ours(), pypi(), rtol=1e-4, atol=1e-4)
            t_ours, t_pypi = best_of(ours, repeat=7), best_of(pypi, repeat=7)
            print(
                f"load + run {name:>13} ({LAYERS}x{WIDTH} MLP): ours {t_ours * 1e3:6.1f} ms, "
                f"PyPI tract {t_pypi * 1e3:6.1f} ms, ratio {t_pypi / t_ours:.2f}x (goal >= 1)"
            )
        m_ours, m_pypi = TractModel(path), tract.nnef().load(str(path)).into_runnable()
        runs = 20
        t0 = time.perf_counter()
        for _ in range(runs):
            m_ours.run([x])
        t_ours = (time.perf_counter() - t0) / runs
        t0 = time.perf_counter()
        for _ in range(runs):
            m_pypi.run([x])[0].to_numpy()
        t_pypi = (time.perf_counter() - t0) / runs
        print(f"run only: ours {t_ours * 1e3:.2f} ms, PyPI tract {t_pypi * 1e3:.2f} ms, ratio {t_pypi / t_ours:.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
