"""Key generation, signing and `edgeml inspect` verification."""

from __future__ import annotations

import json
import stat

from edgeml.bundle import verify_bundle


def test_keys_generate_writes_a_private_key_only_its_owner_can_read(run_cli, tmp_path):
    result = run_cli("keys", "generate", "--out", tmp_path / "k")
    assert result.exit_code == 0, result.output
    private, public = tmp_path / "k" / "edgeml.key", tmp_path / "k" / "edgeml.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert b"BEGIN PUBLIC KEY" in public.read_bytes()


def test_keys_generate_refuses_to_overwrite(run_cli, tmp_path):
    run_cli("keys", "generate", "--out", tmp_path)
    before = (tmp_path / "edgeml.key").read_bytes()
    result = run_cli("keys", "generate", "--out", tmp_path)
    assert result.exit_code != 0
    assert result.error_lines and "--force" in result.error_lines[0]
    assert (tmp_path / "edgeml.key").read_bytes() == before


def test_inspect_verifies_a_signed_bundle(run_cli, signed_cnn_bundle, keys):
    result = run_cli("inspect", signed_cnn_bundle, "--verify-key", keys[1])
    assert result.exit_code == 0, result.output
    assert "signature verified" in result.output
    assert "int8" in result.output and "fp16" in result.output


def test_inspect_json_reports_verification(run_cli, signed_cnn_bundle, keys):
    result = run_cli("inspect", signed_cnn_bundle, "--verify-key", keys[1], "--json")
    data = json.loads(result.output)
    assert data["signature_verified"] is True
    assert data["files_checked"] == 4  # samples + three artifacts
    assert data["manifest"]["name"] == "digits"


def test_inspect_names_the_file_whose_byte_changed(run_cli, signed_cnn_bundle_copy, keys):
    target = signed_cnn_bundle_copy / "artifacts" / "model.int8.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    result = run_cli("inspect", signed_cnn_bundle_copy, "--verify-key", keys[1])
    assert result.exit_code != 0
    assert len(result.error_lines) == 1 and "Traceback" not in result.output
    assert "artifacts/model.int8.onnx" in result.output


def test_inspect_rejects_a_modified_manifest(run_cli, signed_cnn_bundle_copy, keys):
    manifest = signed_cnn_bundle_copy / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"digits"', '"digitz"', 1))
    result = run_cli("inspect", signed_cnn_bundle_copy, "--verify-key", keys[1])
    assert result.exit_code != 0
    assert "signature check failed" in result.output


def test_inspect_rejects_a_bundle_signed_with_another_key(run_cli, signed_cnn_bundle, tmp_path):
    run_cli("keys", "generate", "--out", tmp_path)
    result = run_cli("inspect", signed_cnn_bundle, "--verify-key", tmp_path / "edgeml.pub")
    assert result.exit_code != 0 and "signature check failed" in result.output


def test_verify_key_requires_a_signature(run_cli, unsigned_bundle, keys):
    result = run_cli("inspect", unsigned_bundle, "--verify-key", keys[1])
    assert result.exit_code != 0 and "not signed" in result.output
    assert verify_bundle(unsigned_bundle).signed is False


def test_bad_verify_key_is_one_error_line(run_cli, signed_cnn_bundle, tmp_path):
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    result = run_cli("inspect", signed_cnn_bundle, "--verify-key", bad)
    assert result.exit_code != 0
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("Error: ")
