"""`edgeml keys`: ed25519 signing keys for bundles."""

from __future__ import annotations

from pathlib import Path

import click

from . import signing


@click.group()
def keys() -> None:
    """Generate and manage bundle signing keys."""


@keys.command("generate")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True, help="Directory for edgeml.key and edgeml.pub.")
@click.option("--force", is_flag=True, help="Overwrite an existing key pair.")
def generate(out_dir: Path, force: bool) -> None:
    """Write an ed25519 key pair: edgeml.key (keep secret, signs bundles) and edgeml.pub (pin on devices)."""
    private_path, public_path = signing.generate_keypair(out_dir, force=force)
    click.echo(f"private key: {private_path}  (keep it secret; pass it to `edgeml convert --sign-key`)")
    click.echo(f"public key:  {public_path}  (give it to devices and `edgeml inspect --verify-key`)")
