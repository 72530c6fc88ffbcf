"""PEFT adapters built locally with the `peft` package, exported by export_peft_to_nnef (function and CLI)."""

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import peft
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from torch_to_nnef import export_peft_to_nnef, read_dat
from torch_to_nnef.errors import InvalidArgumentError, OutputExistsError
from torch_to_nnef.peft import MAPPING_FILENAME, main

ROOT = Path(__file__).resolve().parents[2]


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def peft_model(config) -> nn.Module:
    torch.manual_seed(0)
    model = peft.get_peft_model(Tiny(), config)
    with torch.no_grad():  # LoRA B starts at zero: give every adapter tensor distinct values
        for name, p in model.named_parameters():
            if "base_layer" not in name:
                p.copy_(torch.randn_like(p))
    return model


def state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def lora_sd() -> dict[str, torch.Tensor]:
    return state_dict(peft_model(peft.LoraConfig(target_modules=["fc1", "fc2"], r=2)))


@pytest.fixture(scope="module")
def dora_sd() -> dict[str, torch.Tensor]:
    return state_dict(peft_model(peft.LoraConfig(target_modules=["fc1", "fc2"], r=2, use_dora=True)))


LORA_KEYS = [f"base_model.model.{m}.lora_{ab}.default.weight" for m in ("fc1", "fc2") for ab in "AB"]


def read_folder(folder: Path) -> tuple[dict[str, np.ndarray], dict]:
    tensors = {p.name[: -len(".dat")]: read_dat(p) for p in folder.glob("*.dat")}
    return tensors, json.loads((folder / MAPPING_FILENAME).read_text())


def assert_exported(folder: Path, sd: dict[str, torch.Tensor], keys: list[str]) -> dict:
    tensors, document = read_folder(folder)
    assert sorted(tensors) == sorted(keys)
    for k in keys:
        assert isinstance(tensors[k], np.ndarray)
        assert tensors[k].dtype == sd[k].numpy().dtype
        assert tensors[k].tobytes() == sd[k].numpy().tobytes(), k
    assert sorted(document["mapping"]) == sorted(keys)
    return document


def test_lora_from_a_peft_state_dict(tmp_path, lora_sd):
    src = tmp_path / "peft_model.safetensors"
    save_file(lora_sd, src)
    mapping = export_peft_to_nnef(src, tmp_path / "out", check_map_name="{name}.base_layer.weight")
    expected = {k: k.split(".lora_")[0] + ".weight" for k in LORA_KEYS}
    assert mapping == expected
    document = assert_exported(tmp_path / "out", lora_sd, LORA_KEYS)
    assert document["mapping"] == expected
    assert document["method"] == "LoRA"
    assert document["source"] == "peft_model.safetensors"
    # each mapped base weight is a real weight of the model, with the shape the adapter implies
    for k, base in mapping.items():
        base_in_file = base.replace(".weight", ".base_layer.weight")
        a_or_b = lora_sd[k].shape
        assert lora_sd[base_in_file].shape[1 if ".lora_A." in k else 0] == a_or_b[1 if ".lora_A." in k else 0]


@pytest.mark.parametrize("suffix", [".pt", ".bin"])
def test_lora_from_a_torch_file_with_map_name(tmp_path, lora_sd, suffix):
    src = tmp_path / f"peft_model{suffix}"
    torch.save(lora_sd, src)
    mapping = export_peft_to_nnef(src, tmp_path / "out", map_name="{name}.base_layer.weight")
    assert mapping == {k: k.split(".lora_")[0] + ".base_layer.weight" for k in LORA_KEYS}
    assert all(base in lora_sd for base in mapping.values())
    assert_exported(tmp_path / "out", lora_sd, LORA_KEYS)


def test_adapter_saved_with_save_pretrained(tmp_path):
    model = peft_model(peft.LoraConfig(target_modules=["fc1"], r=4))
    model.save_pretrained(tmp_path / "adapter")
    src = tmp_path / "adapter" / "adapter_model.safetensors"
    with safe_open(src, framework="pt") as f:
        saved = {k: f.get_tensor(k) for k in f.keys()}
    assert sorted(saved) == ["base_model.model.fc1.lora_A.weight", "base_model.model.fc1.lora_B.weight"]
    mapping = export_peft_to_nnef(src, tmp_path / "out")
    assert mapping == {k: "base_model.model.fc1.weight" for k in saved}
    assert_exported(tmp_path / "out", saved, list(saved))
    # an adapter file has no base weights: asking to check them says which is missing
    with pytest.raises(InvalidArgumentError, match=r"base weight 'base_model\.model\.fc1\.base_layer\.weight'"):
        export_peft_to_nnef(src, tmp_path / "out2", check_map_name="{name}.base_layer.weight")
    assert not (tmp_path / "out2").exists()


def test_dora(tmp_path, dora_sd):
    src = tmp_path / "dora.safetensors"
    save_file(dora_sd, src)
    magnitudes = [f"base_model.model.{m}.lora_magnitude_vector.default.weight" for m in ("fc1", "fc2")]
    assert all(k in dora_sd for k in magnitudes)
    mapping = export_peft_to_nnef(src, tmp_path / "dora", method="DoRA", check_map_name="{name}.base_layer.weight")
    assert mapping["base_model.model.fc2.lora_magnitude_vector.default.weight"] == "base_model.model.fc2.weight"
    assert_exported(tmp_path / "dora", dora_sd, LORA_KEYS + magnitudes)
    # the LoRA preset leaves the magnitudes out
    export_peft_to_nnef(src, tmp_path / "lora")
    assert_exported(tmp_path / "lora", dora_sd, LORA_KEYS)


@pytest.mark.parametrize(
    ("method", "config"),
    [
        ("IA3", lambda: peft.IA3Config(target_modules=["fc1", "fc2"], feedforward_modules=["fc2"])),
        ("LoHa", lambda: peft.LoHaConfig(target_modules=["fc1"], r=2)),
        ("LoKr", lambda: peft.LoKrConfig(target_modules=["fc1"], r=2)),
    ],
)
def test_other_method_presets_select_exactly_the_adapter(tmp_path, method, config):
    sd = state_dict(peft_model(config()))
    adapter_keys = [k for k in sd if "base_layer" not in k and not k.endswith((".fc2.weight", ".fc2.bias"))]
    assert adapter_keys
    src = tmp_path / "model.pt"
    torch.save(sd, src)
    mapping = export_peft_to_nnef(
        src, tmp_path / "out", method=method.lower(), check_map_name="{name}.base_layer.weight"
    )
    assert sorted(mapping) == sorted(adapter_keys)
    assert_exported(tmp_path / "out", sd, adapter_keys)


def test_custom_patterns_with_and_without_a_named_group(tmp_path, lora_sd):
    src = tmp_path / "model.safetensors"
    save_file(lora_sd, src)
    named = export_peft_to_nnef(src, tmp_path / "a", patterns=[r"^(?P<name>.+\.fc1)\.lora_B\.default\.weight$"])
    assert named == {"base_model.model.fc1.lora_B.default.weight": "base_model.model.fc1.weight"}
    plain = export_peft_to_nnef(src, tmp_path / "b", patterns=[r"\.lora_A\.default\.weight$"], map_name="{name}.w")
    assert plain == {
        "base_model.model.fc1.lora_A.default.weight": "base_model.model.fc1.w",
        "base_model.model.fc2.lora_A.default.weight": "base_model.model.fc2.w",
    }
    assert json.loads((tmp_path / "b" / MAPPING_FILENAME).read_text())["method"] == "custom"


def test_tgz_output(tmp_path, lora_sd):
    src = tmp_path / "model.safetensors"
    save_file(lora_sd, src)
    export_peft_to_nnef(src, tmp_path / "lora.tgz")
    with tarfile.open(tmp_path / "lora.tgz", "r:gz") as tar:
        assert sorted(tar.getnames()) == sorted([f"{k}.dat" for k in LORA_KEYS] + [MAPPING_FILENAME])
        tar.extractall(tmp_path / "extracted", filter="data")
    assert_exported(tmp_path / "extracted", lora_sd, LORA_KEYS)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["extracted", "lora.tgz", "model.safetensors"]


def test_errors_leave_nothing(tmp_path, lora_sd):
    src = tmp_path / "model.safetensors"
    save_file(lora_sd, src)
    with pytest.raises(InvalidArgumentError, match=r"no tensor .* matches the patterns tried: .*lora_Q"):
        export_peft_to_nnef(src, tmp_path / "out.tgz", patterns=[r"\.lora_Q\.weight$"])
    with pytest.raises(InvalidArgumentError, match="unknown PEFT method"):
        export_peft_to_nnef(src, tmp_path / "out", method="QLoRAX")
    with pytest.raises(InvalidArgumentError, match="placeholder"):
        export_peft_to_nnef(src, tmp_path / "out", map_name="{module}.weight")
    with pytest.raises(InvalidArgumentError, match="invalid regular expression"):
        export_peft_to_nnef(src, tmp_path / "out", patterns=["(unclosed"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    (tmp_path / "taken").mkdir()
    with pytest.raises(OutputExistsError):
        export_peft_to_nnef(src, tmp_path / "taken")
    export_peft_to_nnef(src, tmp_path / "taken", overwrite=True)
    assert_exported(tmp_path / "taken", lora_sd, LORA_KEYS)


# ----------------------------------------------------------------------------------------------
# command line


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-m", "torch_to_nnef.peft", *args], cwd=cwd, capture_output=True, text=True, env=env
    )


def test_cli_relative_and_absolute_paths(tmp_path, dora_sd):
    work = tmp_path / "work"
    work.mkdir()
    torch.save(dora_sd, work / "peft_model.pt")
    # the README's examples, relative to the current folder
    done = cli("--read-filepath", "peft_model.pt", "-o", "lora_nnef", cwd=work)
    assert done.returncode == 0, done.stderr
    assert "exported 4 tensors to lora_nnef" in done.stdout
    assert "4/4 tensors" in done.stderr  # progress logging
    assert_exported(work / "lora_nnef", dora_sd, LORA_KEYS)
    done = cli(
        "--read-filepath",
        "peft_model.pt",
        "-o",
        "dora.tgz",
        "--method",
        "DoRA",
        "--check-map-name",
        "{name}.base_layer.weight",
        "--map-name",
        "{name}.weight",
        cwd=work,
    )
    assert done.returncode == 0, done.stderr
    with tarfile.open(work / "dora.tgz") as tar:
        tar.extractall(tmp_path / "dora", filter="data")
    document = assert_exported(tmp_path / "dora", dora_sd, [k for k in dora_sd if "lora_" in k])
    assert document["mapping"]["base_model.model.fc1.lora_A.default.weight"] == "base_model.model.fc1.weight"
    # absolute paths, from another folder
    done = cli("--read-filepath", str(work / "peft_model.pt"), "-o", str(tmp_path / "abs"), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert_exported(tmp_path / "abs", dora_sd, LORA_KEYS)


def test_cli_errors_are_one_line_with_a_non_zero_exit(tmp_path, lora_sd):
    src = tmp_path / "model.safetensors"
    save_file(lora_sd, src)
    done = cli("--read-filepath", "model.safetensors", "-o", "out", "--patterns", r"\.lora_Z\.weight$", cwd=tmp_path)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("export_peft_to_nnef: error:")]
    assert len(errors) == 1
    assert "no tensor" in errors[0] and r"\.lora_Z\.weight$" in errors[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
    verbose = cli("--read-filepath", "model.safetensors", "-o", "out", "--patterns", "nothing$", "-v", cwd=tmp_path)
    assert verbose.returncode == 1
    assert "Traceback" in verbose.stderr and "InvalidArgumentError" in verbose.stderr
    missing = cli("--read-filepath", "absent.pt", "-o", "out", cwd=tmp_path)
    assert missing.returncode == 1 and "absent.pt: no such file" in missing.stderr
    usage = cli("--read-filepath", "model.safetensors", cwd=tmp_path)  # -o missing
    assert usage.returncode == 2 and "-o" in usage.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]


def test_cli_help_explains_every_option_with_examples():
    done = subprocess.run(
        [sys.executable, "-m", "torch_to_nnef.peft", "--help"], capture_output=True, text=True, check=True
    )
    text = done.stdout
    for option in ("--read-filepath", "-o", "--patterns", "--method", "--check-map-name", "--map-name", "--bf16"):
        assert option in text
    assert "export_peft_to_nnef --read-filepath peft_model.pt -o lora_nnef" in text
    assert "(?P<name>...)" in text
    assert "LoRA" in text and "DoRA" in text


def test_console_script(tmp_path, lora_sd, capsys):
    pyproject = (ROOT / "pyproject.toml").read_text()
    scripts = pyproject.split("[project.scripts]\n", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^export_peft_to_nnef = "torch_to_nnef\.peft:main"$', scripts, re.M)
    save_file(lora_sd, tmp_path / "model.safetensors")
    assert main(["--read-filepath", str(tmp_path / "model.safetensors"), "-o", str(tmp_path / "out")]) == 0
    assert_exported(tmp_path / "out", lora_sd, LORA_KEYS)
    assert main(["--read-filepath", str(tmp_path / "model.safetensors"), "-o", str(tmp_path / "out")]) == 1
    assert "already exists" in capsys.readouterr().err
    installed = shutil.which("export_peft_to_nnef")
    if installed:  # present once the package is (re)installed with its entry points
        done = subprocess.run([installed, "--help"], capture_output=True, text=True, check=True)
        assert "--read-filepath" in done.stdout
