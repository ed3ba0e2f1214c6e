"""Options shared by the commands, defined once (after pip-tools' scripts/options.py)."""

from __future__ import annotations

import math

import click

from sweep.plan import NAME_RE


class SweepName(click.ParamType):
    """A sweep name: a safe directory name (no path separators, no shell characters)."""

    name = "NAME"

    def convert(self, value, param, ctx):
        if not isinstance(value, str) or not NAME_RE.fullmatch(value) or ".." in value:
            self.fail(f"invalid sweep name {value!r}: use letters, digits, '.', '_' or '-' "
                      "(at most 64), starting with a letter or digit", param, ctx)
        return value


class PositiveFloat(click.ParamType):
    """A positive finite number such as 1e18."""

    name = "FLOAT"

    def convert(self, value, param, ctx):
        try:
            x = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not (math.isfinite(x) and x > 0):
            self.fail(f"{value!r} must be a positive finite number", param, ctx)
        return x


SWEEP = SweepName()
POSITIVE = PositiveFloat()

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print one JSON object on stdout (the schema in the README).")
root_option = click.option(
    "--root", type=click.Path(file_okay=False), envvar="SWEEP_ROOT", default="runs",
    show_default=True, show_envvar=True,
    help="Directory holding the sweeps and their store (sweep.db).")
force_option = click.option("--force", is_flag=True,
                            help="Replace an existing sweep's different plan (results are kept).")
overrides_argument = click.argument("overrides", nargs=-1, metavar="[OVERRIDES]...")


def bootstrap_options(default: int = 1000, over: str = "runs", most: int = 100000):
    """``--bootstrap N`` (resamples over ``over`` for the 95 % intervals) and ``--seed``."""
    def deco(f):
        f = click.option("--seed", type=int, default=0, show_default=True,
                         help="Bootstrap seed.")(f)
        return click.option("--bootstrap", type=click.IntRange(0, most), default=default,
                            show_default=True,
                            help=f"Bootstrap resamples over {over} for the 95% intervals.")(f)
    return deco


def emit(obj: dict) -> None:
    """Print one JSON object on stdout: the whole output of a command run with --json."""
    import json

    click.echo(json.dumps(obj))
