"""Model archives: folder, tar and tgz, atomic, and refusing members that escape."""

import io
import tarfile

import numpy as np
import pytest

from torch_to_nnef import TractModel, _rust, list_archive, quantize_q4_0, write_nnef_archive
from torch_to_nnef.errors import InvalidArgumentError, OutputExistsError, UnsafePathError

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
