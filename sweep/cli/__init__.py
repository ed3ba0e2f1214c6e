"""The `sweep` command: a click group whose commands are registered explicitly."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path

import click

from sweep.errors import InputError, SweepError


class InputClickError(click.ClickException):
    """A one-line error about the user's input; exits 2 like click's usage errors."""

    exit_code = 2


class SweepGroup(click.Group):
    """The one place where errors become one-line messages (cf. flask's FlaskGroup)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except InputError as exc:
            raise InputClickError(str(exc)) from None
        except SweepError as exc:
            err = click.ClickException(str(exc))
            err.exit_code = exc.exit_code
            raise err from None
        except (click.exceptions.Exit, click.ClickException, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # `sweep … | head`: the reader left; stop quietly, like cat
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # so the exit-time flush cannot fail again
            raise click.exceptions.Exit(141) from None  # 128 + SIGPIPE, as a shell reports it
        except Exception as exc:  # noqa: BLE001 - anything else: one line, traceback to a file
            if ctx.meta.get("sweep.debug"):
                raise
            root = Path(os.environ.get("SWEEP_ROOT", "runs"))
            logfile = root / "sweep.log" if root.is_dir() else Path("sweep.log").resolve()
            with open(logfile, "a") as fh:
                traceback.print_exc(file=fh)
            raise click.ClickException(
                f"internal error ({type(exc).__name__}: {exc}); traceback in {logfile}") from None


@click.group(cls=SweepGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks for internal errors.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress details to stderr.")
@click.version_option(package_name="sweep")
@click.pass_context
def cli(ctx: click.Context, debug: bool, verbose: bool) -> None:
    """Plan, train, fit and extrapolate scaling-law sweeps of language models.

    Typical flow: `sweep plan NAME [overrides]`, `sweep launch NAME`, `sweep status NAME`,
    `sweep fit NAME`, `sweep recommend NAME --compute 1e16`. `sweep demo` does all of it on the
    built-in corpus. Overrides are Hydra's, e.g. model.widths=[64,128] budget.tokens=[1e6,4e6].
    """
    ctx.meta["sweep.debug"] = debug
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


from sweep.cli import (bench_commands, commands, data_commands, fit_commands,  # noqa: E402
                       report_commands, slurm_commands)

for _cmd in (commands.plan, commands.launch, commands.status, commands.fit,
             commands.recommend, commands.demo, slurm_commands.cancel, slurm_commands.retry,
             fit_commands.isoflop, fit_commands.compare, fit_commands.kaplan,
             data_commands.import_, data_commands.export, data_commands.list_,
             report_commands.next_, report_commands.report, report_commands.cost,
             bench_commands.bench):
    cli.add_command(_cmd)

from sweep.cli import curve_commands, downstream_commands  # noqa: E402  (issue 7: fitting)

for _cmd in (downstream_commands.downstream, downstream_commands.convert,
             curve_commands.envelope, curve_commands.learning_curve):
    cli.add_command(_cmd)


def main() -> None:
    cli(prog_name="sweep")
