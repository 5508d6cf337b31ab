"""`--config FILE.yaml`: any option of `edgeml train` as a YAML mapping; flags on the command line win.

Keys are option names with dashes or underscores (`test-size: 0.3`, `sensitive: group`). The file is
read by an eager click callback into the context's `default_map`, click's own mechanism for
configuration defaults, so an explicit flag always takes precedence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgeml.errors import UsageError


def load_config(ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
    if value is None or ctx.resilient_parsing:
        return value
    try:
        import yaml
    except ImportError:
        from edgeml.errors import MissingDependencyError

        raise MissingDependencyError("pyyaml", "train") from None
    try:
        data = yaml.safe_load(Path(value).read_text())
    except OSError as exc:
        raise UsageError(f"--config {value}: cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--config {value} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"--config {value} must be a mapping of option names to values")
    known = _flag_names(ctx.command)
    defaults: dict[str, Any] = {}
    for key, v in data.items():
        name = known.get(str(key).replace("_", "-"))
        if name is None:
            raise UsageError(f"--config {value}: unknown option {key!r}; valid: {', '.join(sorted(known))}")
        defaults[name] = v
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return value


def _flag_names(command: click.Command) -> dict[str, str]:
    """Long flag without dashes (`test-size`) -> click parameter name (`test_size`), --config excluded."""
    out = {}
    for param in command.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--") and param.name != "config":
                out[opt[2:]] = param.name
    return out
