"""`edgeml demo` end to end with a few devices: train, convert, fleet, devices, rollout, clean exit."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fleet_fixtures import free_port


@pytest.mark.slow
def test_demo_rolls_version_2_out_to_every_device_and_exits_cleanly(tmp_path):
    out = subprocess.run([sys.executable, "-m", "edgeml", "demo", "--devices", "3", "--port", str(free_port()),
                          "--dir", str(tmp_path / "demo"), "--json"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout)
    assert summary["rollout"]["state"] == "completed"
    assert summary["versions"] == {"2.0.0": 3} and summary["devices_online"] == 3
    assert {f["format"] for f in summary["formats"]} == {"onnx", "tflite", "openvino"}
    assert {f["precision"] for f in summary["formats"]} == {"fp32", "int8"}
    assert sum(summary["backends"].values()) == 3 and summary["backends"]["litert"] == 1
    # Everything it wrote is under the one directory it named.
    root = tmp_path / "demo"
    assert summary["directory"] == str(root)
    assert {p.name for p in root.iterdir()} >= {"runs", "bundles", "fleet", "devices", "keys"}
    assert "Traceback" not in out.stderr
