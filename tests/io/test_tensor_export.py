"""Tensors alone to .dat files: from memory (export_tensors_to_nnef) and from checkpoint files
(export_tensors_from_disk_to_nnef), read back and compared byte for byte."""

import json
import logging
import pickle
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from torch_to_nnef import (
    Q40Tensor,
    export_tensors_from_disk_to_nnef,
    export_tensors_to_nnef,
    quantize_q4_0,
    read_dat,
)
from torch_to_nnef.errors import (
    DTypeError,
    FormatError,
    InvalidArgumentError,
    MissingFolderError,
    NameClashError,
    NNEFIOError,
    OutputExistsError,
    UnsafeFileError,
    UnsafePathError,
)


class FakeQTensor(torch.Tensor):
    """A torch tensor subclass with `to_q4_0`, like the package's quantized tensors."""

    def to_q4_0(self) -> Q40Tensor:
        return quantize_q4_0(self.as_subclass(torch.Tensor))


class BrokenQTensor(torch.Tensor):
    def to_q4_0(self) -> Q40Tensor:
        raise RuntimeError("quantization failed on purpose")


def assert_dat_equals(path, expected) -> None:
    got = read_dat(path)
    if isinstance(expected, torch.Tensor):
        expected = expected.detach().contiguous().numpy()
    assert isinstance(got, np.ndarray)
    assert got.dtype == expected.dtype
    assert got.shape == expected.shape
    assert got.tobytes() == np.ascontiguousarray(expected).tobytes()


def listing(folder) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def sample_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return {
        "encoder.weight": torch.randn(6, 5, generator=g),
        "encoder.bias": torch.randn(6, generator=g, dtype=torch.float64),
        "decoder.weight": torch.randn(3, 4, generator=g).to(torch.float16),
        "ids": torch.randint(-1000, 1000, (7,), generator=g, dtype=torch.int64),
        "mask": torch.randn(2, 3, generator=g) > 0,
        "pixels": torch.randint(0, 255, (4, 4), generator=g, dtype=torch.uint8),
    }


# ----------------------------------------------------------------------------------------------
# from memory


def test_export_from_memory_every_kind_of_value(tmp_path):
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 64, generator=g)
    q_source = torch.randn(4, 64, generator=g)
    values = {
        "linear_0": nn.Linear(10, 20).weight,  # a parameter with grad
        "transposed": torch.arange(12, dtype=torch.float32).reshape(3, 4).t(),  # not contiguous
        "np/int8": np.arange(-5, 5, dtype=np.int8),
        "q/packed": quantize_q4_0(weight),
        "q/qtensor": q_source.as_subclass(FakeQTensor),
    }
    out = tmp_path / "dump"
    returned = export_tensors_to_nnef(values, out)
    assert returned == values
    assert listing(out) == sorted(
        ["linear_0.dat", "transposed.dat", "np", "np/int8.dat", "q", "q/packed.dat", "q/qtensor.dat"]
    )
    assert_dat_equals(out / "linear_0.dat", values["linear_0"])
    assert_dat_equals(out / "transposed.dat", values["transposed"])
    assert_dat_equals(out / "np/int8.dat", values["np/int8"])
    packed = read_dat(out / "q/packed.dat")
    assert isinstance(packed, Q40Tensor)
    assert packed.to_bytes() == quantize_q4_0(weight).to_bytes()
    from_qtensor = read_dat(out / "q/qtensor.dat")
    assert isinstance(from_qtensor, Q40Tensor)
    assert from_qtensor.shape == [4, 64]
    assert from_qtensor.to_bytes() == quantize_q4_0(q_source).to_bytes()


def test_package_qtensors_are_written_as_q4_0(tmp_path):
    from torch_to_nnef.io.qtensor import fp_to_tract_q4_0_with_min_max_calibration

    weight = torch.randn(16, 64, generator=torch.Generator().manual_seed(3))
    q = fp_to_tract_q4_0_with_min_max_calibration(weight)
    export_tensors_to_nnef({"layer/weight": q, "bias": torch.ones(16)}, tmp_path / "out")
    got = read_dat(tmp_path / "out/layer/weight.dat")
    assert isinstance(got, Q40Tensor)
    assert got.shape == [16, 64]
    assert got.to_bytes() == quantize_q4_0(weight).to_bytes()
    assert_dat_equals(tmp_path / "out/bias.dat", torch.ones(16))


def test_name_tensor_pairs_and_duplicate_names(tmp_path):
    a, b = torch.ones(2), torch.zeros(3)
    export_tensors_to_nnef([("a", a), ("b", b)], tmp_path / "pairs")
    assert_dat_equals(tmp_path / "pairs/a.dat", a)
    assert_dat_equals(tmp_path / "pairs/b.dat", b)
    with pytest.raises(NameClashError, match="'a'"):
        export_tensors_to_nnef([("a", a), ("a", b)], tmp_path / "dup")
    assert not (tmp_path / "dup").exists()


@pytest.mark.parametrize("name", ["../escape", "/abs/path", "a/../../b", "", "a//b"])
def test_names_that_escape_the_folder_are_refused(tmp_path, name):
    with pytest.raises(UnsafePathError):
        export_tensors_to_nnef({"fine": torch.ones(1), name: torch.ones(1)}, tmp_path / "out")
    assert listing(tmp_path) == []


def test_bf16_is_refused_with_how_to_cast_and_nothing_is_written(tmp_path):
    t = torch.randn(4, 4).to(torch.bfloat16)
    with pytest.raises(DTypeError, match=r"torch\.float16") as info:
        export_tensors_to_nnef({"first": torch.ones(3), "w": t}, tmp_path / "out")
    assert "bf16=" in str(info.value)
    assert listing(tmp_path) == []
    export_tensors_to_nnef({"w": t}, tmp_path / "out", bf16="f32")
    assert_dat_equals(tmp_path / "out/w.dat", t.float())


@pytest.mark.parametrize(
    "value", [torch.zeros(2, dtype=torch.complex64), torch.zeros(3).to_sparse(), "not a tensor", [1.0, 2.0]]
)
def test_unsupported_values_are_refused(tmp_path, value):
    with pytest.raises(DTypeError):
        export_tensors_to_nnef({"x": value}, tmp_path / "out")
    assert listing(tmp_path) == []


def test_missing_parent_folder(tmp_path):
    with pytest.raises(MissingFolderError, match="does not exist"):
        export_tensors_to_nnef({"x": torch.ones(1)}, tmp_path / "no" / "such" / "dir")
    assert listing(tmp_path) == []


def test_existing_folder_keeps_other_files_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "graph.nnef").write_text("version 1.0;\n")
    export_tensors_to_nnef({"w": torch.ones(2), "sub/b": torch.zeros(2)}, out)
    assert listing(out) == ["graph.nnef", "sub", "sub/b.dat", "w.dat"]
    with pytest.raises(OutputExistsError, match="overwrite"):
        export_tensors_to_nnef({"new": torch.ones(1), "w": torch.full((2,), 5.0)}, out)
    assert listing(out) == ["graph.nnef", "sub", "sub/b.dat", "w.dat"]
    assert_dat_equals(out / "w.dat", torch.ones(2))
    export_tensors_to_nnef({"w": torch.full((2,), 5.0)}, out, overwrite=True)
    assert_dat_equals(out / "w.dat", torch.full((2,), 5.0))
    assert (out / "graph.nnef").read_text() == "version 1.0;\n"


@pytest.mark.parametrize("existing", [False, True])
def test_a_failure_in_a_later_batch_leaves_nothing(tmp_path, existing):
    out = tmp_path / "out"
    if existing:
        out.mkdir()
    values = {
        "a": torch.ones(64, 64),
        "b": torch.ones(64, 64),
        "broken": torch.ones(2, 64).as_subclass(BrokenQTensor),
    }
    with pytest.raises(RuntimeError, match="on purpose"):
        export_tensors_to_nnef(values, out, batch_bytes=64 * 64 * 4)
    assert listing(tmp_path) == (["out"] if existing else [])


# ----------------------------------------------------------------------------------------------
# from disk


def test_safetensors_every_dtype_filtered_in_batches(tmp_path, caplog):
    tensors = sample_tensors()
    src = tmp_path / "model.safetensors"
    save_file(tensors, src)
    seen: list[str] = []
    checked: dict = {}

    def filter_key(name: str) -> bool:
        seen.append(name)
        return name != "encoder.bias"

    with caplog.at_level(logging.INFO, logger="torch_to_nnef.io.tensor_export"):
        returned = export_tensors_from_disk_to_nnef(src, tmp_path / "out", filter_key, checked.update, batch_bytes=64)
    assert sorted(seen) == sorted(tensors)
    expected = {k: v for k, v in tensors.items() if k != "encoder.bias"}
    assert sorted(returned) == sorted(checked) == sorted(expected)
    assert listing(tmp_path / "out") == sorted(f"{k}.dat" for k in expected)
    for name, tensor in expected.items():
        assert_dat_equals(tmp_path / "out" / f"{name}.dat", tensor)
        assert torch.equal(returned[name], tensor)
    messages = [r.getMessage() for r in caplog.records]
    assert any("5/5 tensors" in m and "MiB" in m for m in messages), messages


def test_fn_check_found_tensors_error_propagates_and_nothing_is_written(tmp_path):
    src = tmp_path / "model.safetensors"
    save_file(sample_tensors(), src)

    def check(found: dict) -> bool:
        raise ValueError(f"expected 10 tensors, found {len(found)}")

    with pytest.raises(ValueError, match="found 6"):
        export_tensors_from_disk_to_nnef(src, tmp_path / "out", fn_check_found_tensors=check)
    assert listing(tmp_path) == ["model.safetensors"]


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
@pytest.mark.parametrize("zip_format", [True, False])
def test_torch_state_dicts(tmp_path, suffix, zip_format):
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    src = tmp_path / f"weights{suffix}"
    torch.save(model.state_dict(), src, _use_new_zipfile_serialization=zip_format)
    returned = export_tensors_from_disk_to_nnef(src, tmp_path / "out", lambda k: k.startswith("0."))
    assert sorted(returned) == ["0.bias", "0.weight"]
    assert_dat_equals(tmp_path / "out/0.weight.dat", model[0].weight)
    assert_dat_equals(tmp_path / "out/0.bias.dat", model[0].bias)
    assert listing(tmp_path / "out") == ["0.bias.dat", "0.weight.dat"]


def test_nested_checkpoint(tmp_path):
    tensors = sample_tensors()
    layers = [torch.randn(2, 2), torch.randn(3)]
    src = tmp_path / "checkpoint.pt"
    torch.save({"model": tensors, "epoch": 3, "layers": layers, "note": "trained"}, src)
    returned = export_tensors_from_disk_to_nnef(src, tmp_path / "out")
    expected = {**{f"model.{k}": v for k, v in tensors.items()}, "layers.0": layers[0], "layers.1": layers[1]}
    assert sorted(returned) == sorted(expected)
    for name, tensor in expected.items():
        assert_dat_equals(tmp_path / "out" / f"{name}.dat", tensor)


def test_nested_names_that_clash(tmp_path):
    src = tmp_path / "clash.pt"
    torch.save({"a": {"b": torch.ones(1)}, "a.b": torch.zeros(1)}, src)
    with pytest.raises(NameClashError, match="'a.b'"):
        export_tensors_from_disk_to_nnef(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_whole_module_is_refused_with_how_to_save_a_state_dict(tmp_path):
    src = tmp_path / "model.pt"
    torch.save(nn.Linear(3, 2), src)
    with pytest.raises(UnsafeFileError) as info:
        export_tensors_from_disk_to_nnef(src, tmp_path / "out")
    message = str(info.value)
    assert "torch.save(model.state_dict(), path)" in message
    assert "torch.nn.modules.linear.Linear" in message
    assert str(src) in message
    assert not (tmp_path / "out").exists()


class Hostile:
    """Unpickling it calls open(marker, "w"), creating the file: code run by merely loading."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("zip_format", [True, False])
def test_hostile_pickle_is_not_executed(tmp_path, zip_format):
    control = tmp_path / "control-marker"
    with open(tmp_path / "control.pkl", "wb") as f:
        pickle.dump({"w": Hostile(control)}, f)
    with open(tmp_path / "control.pkl", "rb") as f:
        pickle.load(f)["w"].close()  # the payload is live: a plain unpickler runs it
    assert control.exists()

    marker = tmp_path / "marker"
    src = tmp_path / "hostile.pt"
    torch.save({"w": torch.ones(2), "payload": Hostile(marker)}, src, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UnsafeFileError, match="refused"):
        export_tensors_from_disk_to_nnef(src, tmp_path / "out")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_corrupt_safetensors_header_names_the_file(tmp_path):
    bad_json = tmp_path / "bad_json.safetensors"
    body = b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8}'
    bad_json.write_bytes(struct.pack("<Q", len(body)) + body + b"\0" * 8)
    too_long = tmp_path / "too_long.safetensors"
    too_long.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    wrong_size = tmp_path / "wrong_size.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    wrong_size.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    for src in (bad_json, too_long, wrong_size):
        with pytest.raises(FormatError, match=src.name):
            export_tensors_from_disk_to_nnef(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_not_a_torch_checkpoint(tmp_path):
    src = tmp_path / "random.bin"
    src.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(FormatError, match="random.bin"):
        export_tensors_from_disk_to_nnef(src, tmp_path / "out")


def test_missing_file_and_unknown_suffix(tmp_path):
    with pytest.raises(NNEFIOError, match="no such file"):
        export_tensors_from_disk_to_nnef(tmp_path / "missing.safetensors", tmp_path / "out")
    other = tmp_path / "weights.npz"
    np.savez(other, w=np.ones(2))
    with pytest.raises(InvalidArgumentError, match=r"\.safetensors"):
        export_tensors_from_disk_to_nnef(other, tmp_path / "out")


def test_bf16_safetensors(tmp_path):
    t = torch.randn(3, 5).to(torch.bfloat16)
    src = tmp_path / "bf16.safetensors"
    save_file({"w": t}, src)
    with pytest.raises(DTypeError, match="bfloat16"):
        export_tensors_from_disk_to_nnef(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    export_tensors_from_disk_to_nnef(src, tmp_path / "out", bf16="f16")
    assert_dat_equals(tmp_path / "out/w.dat", t.to(torch.float16))


def test_safetensors_memory_stays_bounded(tmp_path):
    """96 MiB of tensors written 8 MiB at a time: resident memory grows by far less than the file."""
    script = textwrap.dedent(
        """
        import sys, torch
        from torch_to_nnef import export_tensors_from_disk_to_nnef

        def status(field):
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) << 10 for line in f if line.startswith(field))

        export_tensors_from_disk_to_nnef(sys.argv[1], sys.argv[2] + "/warm", lambda k: k == "t00")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak (VmHWM) to the current resident set
        base = status("VmRSS:")
        export_tensors_from_disk_to_nnef(sys.argv[1], sys.argv[2] + "/out", batch_bytes=8 << 20)
        print(status("VmHWM:") - base)
        """
    )
    src = tmp_path / "big.safetensors"
    tensors = {f"t{i:02d}": torch.full((1 << 20,), float(i), dtype=torch.float32) for i in range(24)}
    save_file(tensors, src)
    del tensors
    proc = subprocess.run(
        [sys.executable, "-c", script, str(src), str(tmp_path)], capture_output=True, text=True, check=True
    )
    growth = int(proc.stdout.strip())
    assert growth < 48 << 20, f"peak RSS grew by {growth >> 20} MiB for a 96 MiB file"
    assert_dat_equals(tmp_path / "out/t23.dat", torch.full((1 << 20,), 23.0))


def test_import_does_not_import_torch():
    code = (
        "import sys, torch_to_nnef as t\n"
        "t.export_tensors_to_nnef, t.export_tensors_from_disk_to_nnef, t.export_peft_to_nnef\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "names = {'export_tensors_to_nnef', 'export_tensors_from_disk_to_nnef', 'export_peft_to_nnef'}\n"
        "assert names <= set(t.__all__)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docs_example(tmp_path, monkeypatch):
    page = (Path(__file__).resolve().parents[2] / "docs" / "tensors.md").read_text()
    section = page[page.index("## Export tensors alone") :]
    code = section[section.index("```python\n") + len("```python\n") : section.index("```\n", 10)]
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, "docs/tensors.md", "exec"), scope)
    assert sorted(scope["name_to_tensor"]) == ["0.bias", "0.weight"]
    model = scope["model"]
    assert_dat_equals(tmp_path / "my-nnef-tensor-dump-dir/linear_0.dat", model[0].weight)
    assert_dat_equals(tmp_path / "weights-nnef/0.weight.dat", model[0].weight)
    assert_dat_equals(tmp_path / "weights-nnef/0.bias.dat", model[0].bias)
