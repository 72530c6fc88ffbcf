"""The demo (``make demo``): it runs, and it fails when one of its checks fails."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from torch_to_nnef import TractModel
from torch_to_nnef.demo import main as demo_main


def _demo_folder(out: str) -> Path:
    match = re.search(r"^working folder: (.+)$", out, re.MULTILINE)
    assert match, out
    return Path(match[1])


def test_demo_runs(capsys):
    assert demo_main([]) == 0
    out = capsys.readouterr().out
    assert "demo passed: 13 checks" in out and out.count("[ok]") == 13, out
    for section in ("== 1. The README example", "== 2. A real model: nn.TransformerEncoder", "== 3.", "== 4."):
        assert section in out
    # both exports: the archive, the symbolic input, and the check at three sizes of S
    assert "mybeautifulmodel.nnef.tgz (" in out and "transformer_encoder.nnef.tgz (" in out
    assert "input: f32 [1, 10, S]" in out and "tokens: f32 [1, S, 32]" in out
    assert out.count("(the example)") == 2
    assert "[ok] input[1, 10, 107] (a second size of S)" in out
    assert "[ok] tokens[1, 19, 32] (a second size of S)" in out
    assert out.count("(a third size, TractModel run by the demo)") == 2
    # everything was written in a temporary folder, removed at the end
    folder = _demo_folder(out)
    assert f"removed {folder}" in out and not folder.exists()


@pytest.mark.parametrize("wrong_run", [0, 1, 2], ids=["example-size", "second-size", "third-size"])
def test_demo_fails_when_a_check_fails(monkeypatch, capsys, wrong_run):
    # tract's outputs are made wrong at one run of the README example: the check of export_model_to_nnef
    # at the example's size, its check at a second size of S, or the demo's own run at a third size
    runs = itertools.count()
    original = TractModel.run

    def run_off(self, inputs):
        outputs = original(self, inputs)
        return [o + 1 for o in outputs] if next(runs) == wrong_run else outputs

    monkeypatch.setattr(TractModel, "run", run_off)
    assert demo_main([]) == 1
    captured = capsys.readouterr()
    assert "IOMismatchError" in captured.err and "demo FAILED" in captured.err
    assert "demo passed" not in captured.out and "== 2." not in captured.out
    assert not _demo_folder(captured.out).exists()
