"""In-process tract runner: hand-written graphs against numpy, symbols, errors, comparisons."""

import numpy as np
import pytest
import torch

from torch_to_nnef import TractModel, check_outputs, compare_outputs, quantize_q4_0, write_nnef_archive
from torch_to_nnef.demo import q40_linear_graph
from torch_to_nnef.errors import InvalidArgumentError, IOMismatchError, NNEFIOError, TractError

SYMBOLIC = """version 1.0;

extension tract_registry tract_core;
extension tract_symbol S;

graph symbolic( x ) -> ( doubled, total )
{
  x = external<scalar>(shape = [1, S, 8]);
  doubled = mul(x, 2.0);
  total = sum_reduce(x, axes = [1]);
}
"""


@pytest.mark.parametrize("legacy", [False, True], ids=["ggml", "legacy-0x2040"])
@pytest.mark.parametrize("kind", ["folder", "tgz"])
def test_q4_0_linear_matches_numpy(tmp_path, rng, legacy, kind):
    n, k = 48, 96
    w = rng.standard_normal((n, k)).astype(np.float32)
    b = rng.standard_normal((1, n)).astype(np.float32)
    q = quantize_q4_0(w)
    path = write_nnef_archive(
        tmp_path / ("m.nnef.tgz" if kind == "tgz" else "m.nnef"),
        q40_linear_graph(n, k),
        {"layer/weight": q, "layer/bias": b},
        q4_0_legacy=legacy,
    )
    model = TractModel(path)
    assert model.input_names == ["input"] and model.output_names == ["output"]
    for s in (1, 5, 64):
        x = rng.standard_normal((s, k)).astype(np.float32)
        (got,) = model.run([x])
        expected = np.maximum(x @ q.dequantize().T + b, 0)
        check_outputs([expected], [got], tolerance="approximate")
        # And it really is the quantized weight that ran, not a float one.
        assert not np.allclose(got, np.maximum(x @ w.T + b, 0), atol=1e-4)


def test_symbols_resolve_from_inputs_or_bindings(tmp_path, rng):
    path = write_nnef_archive(tmp_path / "s.nnef.tar", SYMBOLIC, {})
    model = TractModel(path)
    assert model.inputs == [("x", "F32", "1,S,8")]
    for s in (3, 17):
        x = rng.standard_normal((1, s, 8)).astype(np.float32)
        doubled, total = model.run([torch.from_numpy(x)])
        check_outputs([x * 2, x.sum(1, keepdims=True)], [doubled, total], tolerance="close")
    bound = TractModel(path, symbols={"S": 100})
    assert bound.inputs == [("x", "F32", "1,100,8")]
    x = rng.standard_normal((1, 100, 8)).astype(np.float32)
    check_outputs([x * 2], bound.run([x])[:1], tolerance="exact")
    with pytest.raises(TractError):
        bound.run([x[:, :7]])
    with pytest.raises(InvalidArgumentError, match="not declared.*S"):
        TractModel(path, symbols={"T": 3})


def test_tract_errors_carry_tracts_message(tmp_path):
    broken = SYMBOLIC.replace("mul(x, 2.0)", "no_such_operator(x)")
    path = write_nnef_archive(tmp_path / "b.nnef", broken, {})
    with pytest.raises(TractError, match="no_such_operator"):
        TractModel(path)
    with pytest.raises(NNEFIOError):
        TractModel(tmp_path / "missing.nnef.tgz")
    model = TractModel(write_nnef_archive(tmp_path / "ok.nnef", SYMBOLIC, {}))
    with pytest.raises(InvalidArgumentError, match="takes 1 inputs"):
        model.run([])


GATHER = """version 1.0;

extension tract_registry tract_core;

graph gather( i ) -> ( y )
{
  i = tract_core_external(shape = [2], datum_type = 'i64');
  table = variable<scalar>(label = 'table', shape = [4]);
  y = tract_core_gather(table, i, axis = 0);
}
"""


def test_a_panic_inside_tract_is_a_tract_error(tmp_path):
    """tract's gather does not check its indices: one past the table panics inside tract, which
    reaches Python as a TractError, and the model stays usable."""
    table = np.arange(4, dtype=np.float32) * 10
    model = TractModel(write_nnef_archive(tmp_path / "g.nnef", GATHER, {"table": table}))
    with pytest.raises(TractError, match="internal error while running the model.*out of range"):
        model.run([np.array([1, 400], dtype=np.int64)])
    np.testing.assert_array_equal(model.run([np.array([3, 0], dtype=np.int64)])[0], [30.0, 0.0])


def test_standard_registry_refuses_tract_extensions(tmp_path):
    path = write_nnef_archive(
        tmp_path / "q.nnef",
        q40_linear_graph(32, 32),
        {"layer/weight": np.zeros((32, 32), np.float32), "layer/bias": np.zeros((1, 32), np.float32)},
    )
    with pytest.raises(TractError):
        TractModel(path, registries=())
    plain = SYMBOLIC.replace("extension tract_registry tract_core;\n", "")
    TractModel(write_nnef_archive(tmp_path / "p.nnef", plain, {}), registries=())


def test_model_from_bytes(tmp_path, rng):
    raw = write_nnef_archive(tmp_path / "s.tgz", SYMBOLIC, {}).read_bytes()
    x = rng.standard_normal((1, 4, 8)).astype(np.float32)
    np.testing.assert_array_equal(TractModel(raw).run([x])[0], x * 2)


def test_comparison_reports():
    e = np.array([1.0, np.nan, np.inf, 100.0], np.float32)
    (r,) = compare_outputs([e], [np.array([1.00005, np.nan, np.inf, 100.01], np.float32)])
    assert r.passed and r.max_abs_err == pytest.approx(0.01, rel=1e-3)
    (r,) = compare_outputs([e], [np.array([1.0, 0.0, -np.inf, 100.0], np.float32)], tolerance="ultra")
    assert not r.passed and r.outliers == 2 and r.first_outlier == 1
    with pytest.raises(IOMismatchError, match="out: MISMATCH.*max abs err 1"):
        check_outputs([np.zeros(3)], [np.ones(3)], names=["out"])
    (r,) = compare_outputs([np.zeros((2, 2))], [np.zeros((2, 3))])
    assert not r.passed and "shape" in r.problem
    (r,) = compare_outputs([np.arange(4)], [np.arange(4) + [0, 0, 0, 1]], tolerance="ultra")
    assert not r.passed  # integers compare exactly whatever the level
    halves = np.float16([1.0, 2.0])
    (r,) = compare_outputs([halves], [halves + np.float16(0.001)], tolerance="close")
    assert r.passed and r.atol == pytest.approx(1e-3)
    with pytest.raises(InvalidArgumentError, match="unknown tolerance"):
        compare_outputs([halves], [halves], tolerance="loose")  # type: ignore[arg-type]
