"""The install exposes every subpackage, and the CLI root stays light."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "tensorflow", "sklearn", "onnx", "fastapi", "sqlalchemy", "openvino", "pandas", "skl2onnx", "rich"]


def run_python(code: str, cwd) -> str:
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_every_subpackage_imports_from_outside_the_repository(tmp_path):
    code = (
        "import importlib, json\n"
        "names = ['edgeml', 'edgeml.train', 'edgeml.convert', 'edgeml.runtime', 'edgeml.fleet',"
        " 'edgeml.convert.sources', 'edgeml.convert.exporters', 'edgeml.convert.quantize', 'edgeml.runtime.backends']\n"
        "print(json.dumps({n: importlib.import_module(n).__file__ for n in names}))"
    )
    files = json.loads(run_python(code, tmp_path))
    assert all(files.values())
    assert files["edgeml.convert"].endswith("convert/__init__.py")


def test_cli_help_imports_no_heavy_framework(tmp_path):
    code = (
        "import sys, json\n"
        "from edgeml.cli import cli\n"
        "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    lines = run_python(code, tmp_path).strip().splitlines()
    modules = set(json.loads(lines[-1]))
    assert "convert" in "\n".join(lines[:-1])  # the help lists the commands
    loaded = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert loaded == []


def test_edgeml_console_script_answers_help(tmp_path):
    out = subprocess.run(["edgeml", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for command in ("convert", "inspect", "keys"):
        assert command in out.stdout


def test_every_command_has_help(run_cli):
    from edgeml.cli import COMMANDS

    for name in COMMANDS:
        result = run_cli(name, "--help")
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output
