"""Shared fixtures: tiny models built in code, data files, keys, and a CLI runner.

Expensive artifacts (trained models, bundles) are session-scoped and built once per run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))  # tests/helpers.py and the factory module


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith("Error:")]


@pytest.fixture(scope="session")
def run_cli():
    from edgeml.cli import cli

    def run(*args: str) -> CliResult:
        result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=True)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            import traceback

            text = "".join(traceback.format_exception(result.exception))
            raise AssertionError(f"edgeml {' '.join(map(str, args))} crashed:\n{text}")
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


@pytest.fixture(scope="session")
def keys(tmp_path_factory) -> tuple[Path, Path]:
    from edgeml.signing import generate_keypair

    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def digits_cnn(tmp_path_factory):
    """A small CNN trained on scikit-learn's digits (8x8 images), saved in every PyTorch form."""
    from helpers import train_digits_cnn

    return train_digits_cnn(tmp_path_factory.mktemp("digits_cnn"))


@pytest.fixture(scope="session")
def tabular(tmp_path_factory):
    """A Pipeline(ColumnTransformer(impute+scale numeric, one-hot strings), MLPClassifier) and its CSV."""
    from helpers import make_tabular_pipeline

    return make_tabular_pipeline(tmp_path_factory.mktemp("tabular"))


@pytest.fixture()
def rng():
    return np.random.default_rng(0)


def convert_or_fail(run_cli, *args) -> Path:
    """Run `edgeml convert` and return the bundle path (--out must be among args)."""
    result = run_cli("convert", *args)
    assert result.exit_code == 0, result.output
    out = Path(args[list(args).index("--out") + 1])
    assert (out / "manifest.json").is_file()
    return out


@pytest.fixture(scope="session")
def signed_cnn_bundle(run_cli, digits_cnn, keys, tmp_path_factory) -> Path:
    """The digits CNN (.pt2) at fp32, fp16 and int8, signed."""
    out = tmp_path_factory.mktemp("bundles") / "digits-1.0.0"
    return convert_or_fail(run_cli, digits_cnn.pt2, "--out", out, "--name", "digits", "--version", "1.0.0",
                           "--precision", "fp32,fp16,int8", "--calibration", digits_cnn.calibration,
                           "--validation", digits_cnn.validation, "--sign-key", keys[0])


@pytest.fixture()
def signed_cnn_bundle_copy(signed_cnn_bundle, tmp_path) -> Path:
    import shutil

    return Path(shutil.copytree(signed_cnn_bundle, tmp_path / signed_cnn_bundle.name))


@pytest.fixture(scope="session")
def signed_tabular_bundle(run_cli, tabular, keys, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "tabular-1"
    return convert_or_fail(run_cli, tabular.model, "--out", out, "--name", "tabular", "--version", "1",
                           "--precision", "fp32,fp16,int8", "--calibration", tabular.csv, "--sign-key", keys[0])


@pytest.fixture(scope="session")
def unsigned_bundle(run_cli, tabular, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "unsigned"
    return convert_or_fail(run_cli, tabular.model, "--out", out, "--name", "tabular", "--version", "0",
                           "--calibration", tabular.csv)
