"""The README's first command keeps working: examples/quickstart.sh end to end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quickstart_builds_signed_bundles_and_catches_tampering(tmp_path):
    out = subprocess.run(["bash", str(ROOT / "examples" / "quickstart.sh"), str(tmp_path / "qs")],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Error: artifacts/model.int8.onnx: sha256 differs" in out.stderr
    for name in ("digits-1.0.0", "customers-1.0.0"):
        manifest = json.loads((tmp_path / "qs" / "bundles" / name / "manifest.json").read_text())
        assert {a["precision"] for a in manifest["artifacts"]} == {"fp32", "fp16", "int8"}
        assert all(a["validation"]["passed"] for a in manifest["artifacts"])
        assert (tmp_path / "qs" / "bundles" / name / "manifest.sig").is_file()
