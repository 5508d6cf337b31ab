"""`edgeml inspect`: verify a bundle and print what it holds."""

from __future__ import annotations

import json
from pathlib import Path

import click

from . import signing
from .bundle import verify_bundle
from .manifest import TokenizerEntry
from .table import human_size, print_table


@click.command("inspect")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--verify-key", type=click.Path(path_type=Path), help="Public key (edgeml.pub); the signature must verify.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest and verification result as JSON.")
def inspect_bundle(bundle: Path, verify_key: Path | None, as_json: bool) -> None:
    """Verify BUNDLE's signature (with --verify-key) and every file's sha256, then print its summary."""
    key = signing.load_public_key(verify_key) if verify_key else None
    result = verify_bundle(bundle, public_key=key)
    m = result.manifest
    status = "signature verified" if result.signature_verified else ("signed, not verified (no --verify-key)" if result.signed else "UNSIGNED")
    if as_json:
        click.echo(json.dumps({
            "bundle": str(bundle), "signed": result.signed, "signature_verified": result.signature_verified,
            "files_checked": result.files_checked, "manifest": m.to_dict(),
        }, indent=2))
        return
    click.echo(f"{m.name} {m.version}  task={m.task}  created {m.created_at}")
    click.echo(f"source: {m.source.get('kind')} ({m.source.get('framework')} {m.source.get('framework_version')})")
    click.echo(f"integrity: {status}; {result.files_checked} file hashes match")
    for kind, specs in (("input", m.inputs), ("output", m.outputs)):
        for t in specs:
            extra = f"  features: {', '.join(t.feature_names)}" if t.feature_names else ""
            click.echo(f"{kind:6} {t.describe()}{extra}")
    if m.tokenizer is not None:
        click.echo(describe_tokenizer(m.tokenizer))
    rows = []
    for a in m.artifacts:
        v = a.validation
        rows.append([a.format, a.precision, a.backend, human_size(a.size), v.get("max_abs_error"),
                     v.get("top1_agreement"), v.get("metric_delta"), a.latency.get("median_ms"),
                     "pass" if v.get("passed") else "FAIL"])
    print_table("artifacts", ["format", "precision", "backend", "size", "max err", "agreement", "metric Δ", "latency ms", "validation"], rows)
    if m.failed:
        print_table("failed targets (not shipped)", ["format", "precision", "backend", "stage", "reason"],
                    [[f.format, f.precision, f.backend, f.stage, f.reason] for f in m.failed])


def describe_tokenizer(tok: TokenizerEntry) -> str:
    """One line for a text bundle's tokenizer: its file, the inputs it fills, its limit, the raw text input."""
    feeds = ", ".join(f"{role} -> {name}" for role, name in tok.inputs.items())
    limit = f"max length {tok.max_length}" if tok.max_length else "no max length"
    return f"tokenizer {tok.file.path}  fills {feeds}; {limit}; raw text input {tok.text_input!r} (BYTES)"
