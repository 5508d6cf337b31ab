"""The `edgeml` command: a lazy click group.

Subcommands live in their own modules and are imported only when invoked, so `edgeml --help` and
`edgeml serve` never import a training or conversion framework.
"""

from __future__ import annotations

import importlib
import sys

import click

from . import __version__
from .errors import EdgeMLError

# name -> "module:attribute" of a click command; one line per command, nothing imported here.
COMMANDS: dict[str, str] = {
    "convert": "edgeml.convert.cli:convert",
    "inspect": "edgeml.inspect_cli:inspect_bundle",
    "keys": "edgeml.keys_cli:keys",
    "predict": "edgeml.runtime.cli_predict:predict",
    "serve": "edgeml.runtime.cli_serve:serve",
    "train": "edgeml.train.cli:train",
    "fleet": "edgeml.fleet_cli:fleet",
    "demo": "edgeml.demo_cli:demo",
}
SHORT_HELP: dict[str, str] = {
    "convert": "Convert a model into a validated, signed bundle.",
    "inspect": "Verify a bundle's signature and hashes and print its summary.",
    "keys": "Generate and manage signing keys.",
    "predict": "Run a bundle on inputs from a .npz, .csv or .json file.",
    "serve": "Serve a bundle over the Open Inference Protocol (KServe v2 REST) with /metrics.",
    "train": "Train a model with CV, search, evaluation and bias checks into a run directory for convert.",
    "fleet": "Run the fleet service; push models, assign versions, watch devices.",
    "demo": "Train, convert, deploy and roll out a model to simulated devices on this machine.",
}


class CLIError(click.ClickException):
    """An EdgeMLError as click prints it: one `Error: …` line, the error's exit status."""

    def __init__(self, error: EdgeMLError) -> None:
        super().__init__(error.message)
        self.exit_code = error.exit_code
        self.error = error


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use (click's documented pattern)."""

    def __init__(self, *args, lazy: dict[str, str], short_help: dict[str, str], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy
        self.short_help = short_help

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module_name, attr = self.lazy[name].split(":")
            return getattr(importlib.import_module(module_name), attr)
        return super().get_command(ctx, name)

    def invoke(self, ctx: click.Context):
        # The CLI boundary: a library error becomes `Error: <message>` and its exit status.
        try:
            return super().invoke(ctx)
        except EdgeMLError as exc:
            raise CLIError(exc) from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Use the static short help so --help does not import every command module.
        rows = [(name, self.short_help.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMANDS, short_help=SHORT_HELP)
@click.version_option(__version__, prog_name="edgeml")
def cli() -> None:
    """edgeml: train, convert, serve and roll out ML models on fleets of small devices."""


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="edgeml", standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("Aborted.", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
