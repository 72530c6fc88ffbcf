"""Model archives: folder, tar and tgz, atomic, and refusing members that escape."""

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest

from torch_to_nnef import TractModel, _rust, list_archive, quantize_q4_0, write_nnef_archive
from torch_to_nnef.errors import (
    FormatError,
    InvalidArgumentError,
    NameClashError,
    OutputExistsError,
    ShapeError,
    UnsafePathError,
)
from torch_to_nnef.io.archive import ArchiveWriter

GRAPH = """version 1.0;

graph g( x ) -> ( y )
{
  x = external<scalar>(shape = [2, 3]);
  w = variable<scalar>(label = 'nested/w', shape = [2, 3]);
  y = add(x, w);
}
"""


@pytest.mark.parametrize("name", ["m.nnef", "m.nnef.tar", "m.nnef.tgz", "m.tar.gz"])
def test_written_archives_run_in_tract(tmp_path, name):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    path = write_nnef_archive(tmp_path / name, GRAPH, {"nested/w": w})
    if path.is_dir():
        assert sorted(str(p.relative_to(path)) for p in path.rglob("*.dat")) == ["nested/w.dat"]
    else:
        assert list_archive(path) == ["graph.nnef", "nested/w.dat"]
        raw = path.read_bytes()
        assert (raw[:2] == b"\x1f\x8b") == name.endswith(("tgz", "gz"))
    x = np.ones((2, 3), np.float32)
    (y,) = TractModel(path).run([x])
    np.testing.assert_array_equal(y, x + w)
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_same_model_same_bytes_and_levels(tmp_path):
    w = {"nested/w": np.zeros((2, 3), np.float32)}
    a = write_nnef_archive(tmp_path / "a.tgz", GRAPH, w, compression_level=9).read_bytes()
    b = write_nnef_archive(tmp_path / "b.tgz", GRAPH, w, compression_level=9).read_bytes()
    assert a == b
    with pytest.raises(InvalidArgumentError, match="0 .none. to 9"):
        write_nnef_archive(tmp_path / "c.tgz", GRAPH, w, compression_level=10)
    assert not (tmp_path / "c.tgz").exists()


def test_existing_archive_is_kept_or_replaced_whole(tmp_path):
    target = tmp_path / "m.nnef.tgz"
    target.write_bytes(b"old archive")
    w = {"nested/w": np.zeros((2, 3), np.float32)}
    with pytest.raises(OutputExistsError):
        write_nnef_archive(target, GRAPH, w)
    assert target.read_bytes() == b"old archive"
    write_nnef_archive(target, GRAPH, w, overwrite=True)
    assert list_archive(target) == ["graph.nnef", "nested/w.dat"]
    folder = tmp_path / "m.nnef"
    folder.mkdir()
    (folder / "stale.dat").write_bytes(b"x")
    write_nnef_archive(folder, GRAPH, w, overwrite=True)
    assert not (folder / "stale.dat").exists() and (folder / "graph.nnef").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.nnef", "m.nnef.tgz"]


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(UnsafePathError):
        write_nnef_archive(tmp_path / "m.tgz", GRAPH, {"ok": np.zeros(1), "../evil": np.zeros(1)})
    bad_q = {"w": quantize_q4_0(np.zeros((2, 32), np.float32))}
    write_nnef_archive(tmp_path / "q.tar", GRAPH, bad_q)  # Q4_0 entries stream like the others
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.tar"]


def _tar(members: list[tarfile.TarInfo], data: bytes = b"x") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for m in members:
            if m.isreg():
                m.size = len(data)
                tar.addfile(m, io.BytesIO(data))
            else:
                tar.addfile(m)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    m = tarfile.TarInfo(name)
    m.type = kind
    m.linkname = link
    return m


@pytest.mark.parametrize(
    "member",
    [
        _member("../escape.dat"),
        _member("/etc/passwd"),
        _member("a/../../b.dat"),
        _member("link.dat", tarfile.SYMTYPE, "/etc/passwd"),
        _member("hard.dat", tarfile.LNKTYPE, "graph.nnef"),
    ],
    ids=["dotdot", "absolute", "nested-dotdot", "symlink", "hardlink"],
)
def test_hostile_archives_are_refused(tmp_path, member):
    raw = _tar([_member("graph.nnef"), member])
    with pytest.raises(UnsafePathError):
        list_archive(raw)
    (tmp_path / "h.tar").write_bytes(raw)
    with pytest.raises(UnsafePathError):
        TractModel(tmp_path / "h.tar")
    with pytest.raises(UnsafePathError):
        _rust.TractModel(raw)


def test_symlinks_in_model_folders_are_refused(tmp_path):
    model = write_nnef_archive(tmp_path / "m", GRAPH, {"nested/w": np.zeros((2, 3), np.float32)})
    (model / "extra.dat").symlink_to("/etc/hostname")
    with pytest.raises(UnsafePathError, match="symbolic links"):
        TractModel(model)


def _members(path):
    """Each member of a .tar/.tgz or file of a folder, with its bytes."""
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}


@pytest.mark.parametrize("name", ["m.nnef", "m.nnef.tar", "m.nnef.tgz"])
@pytest.mark.parametrize("legacy", [False, True])
def test_archive_written_in_pieces_is_the_archive_written_at_once(tmp_path, name, legacy):
    """Tensors cut in pieces at arbitrary rows (dense) or blocks (Q4_0) give the very bytes the
    one-call writer gives for the whole tensors, and the archive runs in tract."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((2, 3)).astype(np.float32)
    big = rng.standard_normal((37, 5, 7)).astype(np.float16)
    ids = rng.integers(-9, 9, size=(11,), dtype=np.int64)
    values = rng.standard_normal((12, 96)).astype(np.float32)
    whole = {"nested/w": w, "big": big, "ids": ids, "q": quantize_q4_0(values)}
    (tmp_path / "whole").mkdir()
    expected = write_nnef_archive(tmp_path / "whole" / name, GRAPH, whole, compression_level=0, q4_0_legacy=legacy)
    with ArchiveWriter(tmp_path / name, q4_0_legacy=legacy) as out:
        out.add_text("graph.nnef", GRAPH)
        out.add_tensor("nested/w", w)
        out.add_pieces("big", "f16", big.shape, [big[:1], big[1:20], big[20:]])
        out.add_pieces("ids", "i64", ids.shape, [ids[:5], ids[5:]])
        flat = values.reshape(-1)
        out.add_pieces("q", "f32", values.shape, [flat[:32], flat[32:640], flat[640:]], q4_0=True)
    assert _members(tmp_path / name) == _members(expected)
    if not (tmp_path / name).is_dir():
        assert (tmp_path / name).read_bytes() == expected.read_bytes()
    x = np.ones((2, 3), np.float32)
    (y,) = TractModel(tmp_path / name).run([x])
    np.testing.assert_array_equal(y, x + w)


@pytest.mark.parametrize("name", ["m.nnef", "m.nnef.tgz"])
def test_file_regions_are_written_as_the_arrays_they_hold(tmp_path, name):
    """Regions of a file read by the Rust core give the bytes of the same arrays given whole:
    elements as stored, and f16/f32 values quantized to Q4_0 as they are read."""
    rng = np.random.default_rng(1)
    dense = rng.integers(-100, 100, size=(33, 7), dtype=np.int8)
    half = rng.standard_normal((40, 64)).astype(np.float16)
    single = rng.standard_normal((3, 96)).astype(np.float32)
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"head" + dense.tobytes() + half.tobytes() + single.tobytes())
    at = {"dense": 4, "half": 4 + dense.nbytes, "single": 4 + dense.nbytes + half.nbytes}
    (tmp_path / "whole").mkdir()
    whole = {"dense": dense, "half": quantize_q4_0(half), "single": quantize_q4_0(single)}
    expected = write_nnef_archive(tmp_path / "whole" / name, GRAPH, whole, compression_level=0)
    with ArchiveWriter(tmp_path / name) as out:
        out.add_text("graph.nnef", GRAPH)
        out.add_file_region("dense", "i8", dense.shape, blob, at["dense"], dense.nbytes)
        out.add_file_region("half", "f16", half.shape, blob, at["half"], half.nbytes, q4_0_values="f16")
        out.add_file_region("single", "f32", single.shape, blob, at["single"], single.nbytes, q4_0_values="f32")
    assert _members(tmp_path / name) == _members(expected)
    with pytest.raises(FormatError, match="truncated"):
        with ArchiveWriter(tmp_path / "t.nnef.tgz") as out:
            out.add_file_region("half", "f16", (60, 64), blob, at["half"], 60 * 64 * 2, q4_0_values="f16")
    with pytest.raises(ShapeError, match="not whole Q4_0 blocks"):
        with ArchiveWriter(tmp_path / "t.nnef.tgz") as out:
            out.add_file_region("half", "f16", (40, 64), blob, at["half"], 100, q4_0_values="f16")
    with pytest.raises(ShapeError, match="missing"):
        with ArchiveWriter(tmp_path / "t.nnef.tgz") as out:
            out.add_file_region("dense", "i8", dense.shape, blob, at["dense"], dense.nbytes - 1)
    assert not (tmp_path / "t.nnef.tgz").exists()


def test_several_regions_make_one_tensor(tmp_path):
    """A tensor from regions of several places, each read in pieces (regions larger than a piece),
    the buffers read into kept from one region and one tensor to the next: the bytes of the
    concatenated arrays given whole."""
    rng = np.random.default_rng(2)
    first = (rng.standard_normal((600, 32768)) * 0.1).astype(np.float16)  # 39 MB: two pieces
    second = (rng.standard_normal((1100, 32768)) * 0.1).astype(np.float16)  # 72 MB: three pieces
    blob = tmp_path / "weights.bin"
    with open(blob, "wb") as f:
        f.write(first.tobytes())
        f.write(second.tobytes())
    row = 32768 * 2

    def rows(array_at: int, first_row: int, count: int) -> tuple[Path, int, int]:
        return blob, array_at + first_row * row, count * row

    (tmp_path / "whole").mkdir()
    whole = {
        "both": quantize_q4_0(np.concatenate([first, second])),
        "swapped": quantize_q4_0(np.concatenate([second[100:], first[:50]])),
        "dense": np.concatenate([second[:7], first[599:]]),
    }
    expected = write_nnef_archive(tmp_path / "whole" / "m.nnef.tgz", GRAPH, whole, compression_level=0)
    with ArchiveWriter(tmp_path / "m.nnef.tgz") as out:
        out.add_text("graph.nnef", GRAPH)
        out.add_file_regions(
            "both", "f16", (1700, 32768), [rows(0, 0, 600), rows(first.nbytes, 0, 1100)], q4_0_values="f16"
        )
        regions = [rows(first.nbytes, 100, 1000), rows(0, 0, 50)]
        out.add_file_regions("swapped", "f16", (1050, 32768), regions, q4_0_values="f16")
        out.add_file_regions("dense", "f16", (8, 32768), [rows(first.nbytes, 0, 7), rows(0, 599, 1)])
    assert _members(tmp_path / "m.nnef.tgz") == _members(expected)


def test_archive_writer_refuses_wrong_pieces_and_leaves_nothing(tmp_path):
    path = tmp_path / "m.nnef.tgz"
    with pytest.raises(ShapeError, match="missing"):
        with ArchiveWriter(path) as out:
            out.add_text("graph.nnef", GRAPH)
            out.add_pieces("w", "f32", (2, 3), [np.zeros(5, np.float32)])
    with pytest.raises(ShapeError, match="remain"):
        with ArchiveWriter(path) as out:
            out.add_pieces("w", "f32", (2, 3), [np.zeros(7, np.float32)])
    with pytest.raises(InvalidArgumentError, match="f16 for a tensor of f32"):
        with ArchiveWriter(path) as out:
            out.add_pieces("w", "f32", (2, 3), [np.zeros(6, np.float16)])
    with pytest.raises(ShapeError, match="whole Q4_0 blocks"):
        with ArchiveWriter(path) as out:
            out.add_pieces("q", "f32", (2, 64), [np.zeros(40, np.float32), np.zeros(88, np.float32)], q4_0=True)
    with pytest.raises(NameClashError):
        with ArchiveWriter(path) as out:
            out.add_tensor("w", np.zeros(3, np.float32))
            out.add_tensor("w", np.zeros(3, np.float32))
    with pytest.raises(UnsafePathError):
        with ArchiveWriter(path) as out:
            out.add_tensor("../w", np.zeros(3, np.float32))
    with pytest.raises(RuntimeError, match="boom"):
        with ArchiveWriter(path) as out:
            out.add_tensor("w", np.zeros(3, np.float32))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with ArchiveWriter(path) as out:
        out.add_text("graph.nnef", GRAPH)
    with pytest.raises(OutputExistsError):
        ArchiveWriter(path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
