"""Session fixtures: the tiny architectures of tests/arch_models.py saved as ExportedPrograms, with
calibration and validation data (digits for the image models, random token ids for the encoder)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import arch_models


@dataclass
class ArchModel:
    pt2: Path
    calibration: Path
    validation: Path
    task: str


def _save(model, example, path: Path) -> Path:
    import torch

    program = torch.export.export(model, (torch.from_numpy(example),), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(path))
    return path


@pytest.fixture(scope="session")
def arch_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("arch")
    x, y = arch_models.digits()
    np.savez(out / "img_cal.npz", input=x[:128], label=y[:128])
    np.savez(out / "img_val.npz", input=x[1400:1600], label=y[1400:1600])
    np.savez(out / "tok_cal.npz", input_ids=arch_models.token_ids(48, 1))
    np.savez(out / "tok_val.npz", input_ids=arch_models.token_ids(48, 2))
    return out


@pytest.fixture(scope="session")
def tiny_bert(arch_dir) -> ArchModel:
    pt2 = _save(arch_models.tiny_bert(), arch_models.token_ids(2), arch_dir / "bert.pt2")
    return ArchModel(pt2, arch_dir / "tok_cal.npz", arch_dir / "tok_val.npz", "embedding")


@pytest.fixture(scope="session")
def tiny_vit(arch_dir) -> ArchModel:
    x, _ = arch_models.digits()
    pt2 = _save(arch_models.trained(arch_models.TinyViT(), epochs=8, samples=1000), x[:2], arch_dir / "vit.pt2")
    return ArchModel(pt2, arch_dir / "img_cal.npz", arch_dir / "img_val.npz", "classification")


@pytest.fixture(scope="session")
def tiny_resnet(arch_dir) -> ArchModel:
    x, _ = arch_models.digits()
    pt2 = _save(arch_models.trained(arch_models.TinyResNet(), epochs=4, samples=800), x[:2], arch_dir / "resnet.pt2")
    return ArchModel(pt2, arch_dir / "img_cal.npz", arch_dir / "img_val.npz", "classification")


def convert_args(model: ArchModel, out: Path, to: str, precision: str) -> list:
    args = [model.pt2, "--out", out, "--name", out.name, "--version", "1", "--to", to, "--precision", precision,
            "--calibration", model.calibration, "--validation", model.validation, "--task", model.task, "--force"]
    if model.task == "classification":
        args += ["--target", "label"]
    return args
