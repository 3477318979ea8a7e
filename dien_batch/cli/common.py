"""Conventions every command shares: --config, --seed, -v/--quiet, exit codes, help examples."""

from __future__ import annotations

import traceback

import click

from .. import ui
from ..config import options_for, read_toml
from ..errors import EXIT_CODES, DienBatchError

EXIT_CODE_HELP = "\b\nExit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if not value:
        return
    ctx.meta["config_path"] = value
    if getattr(ctx.command, "config_is_job_spec", False):  # nightly: the file describes the job itself
        return
    known = {p.name for p in ctx.command.params if p.expose_value}
    values = options_for(ctx.info_name, read_toml(value), known, value)
    ctx.default_map = {**(ctx.default_map or {}), **values}


def _set_verbosity(_ctx: click.Context, param: click.Parameter, value: int | bool) -> None:
    if param.name == "quiet" and value:
        ui.VERBOSITY.level = -1
    elif param.name == "verbose" and value and ui.VERBOSITY.level >= 0:
        ui.VERBOSITY.level = int(value)


def common_options(func):
    """--config FILE.toml, --seed, -v/--verbose, -q/--quiet."""
    options = [
        click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
                     callback=_load_config,
                     help="TOML file whose keys mirror these options; the command line wins."),
        click.option("--seed", type=int, default=0, show_default=True, help="Random seed."),
        click.option("-v", "--verbose", count=True, expose_value=False, callback=_set_verbosity,
                     help="More detail (tracebacks on errors with -v)."),
        click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_set_verbosity,
                     help="No progress bars or summary."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def command(group: click.Group, name: str, examples: str):
    """Register a command on the group with the shared options and an examples + exit-codes epilog."""
    epilog = "\b\nExamples:\n" + "\n".join(f"  {line}" for line in examples.strip().splitlines())
    epilog += "\n\n" + EXIT_CODE_HELP

    def decorate(func):
        return group.command(name, context_settings=CONTEXT, epilog=epilog)(common_options(func))

    return decorate


class DienBatchGroup(click.Group):
    """Maps errors to the documented exit codes: no tracebacks for errors the user can act on."""

    def invoke(self, ctx: click.Context):
        ui.VERBOSITY.level = 0  # -v / -q of this invocation set it again while parsing
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except DienBatchError as exc:
            if ui.VERBOSITY.level >= 1:
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:  # noqa: BLE001 - the last line of defence, exit code 1
            if ui.VERBOSITY.level >= 1:
                traceback.print_exc()
            click.echo(f"unexpected error: {type(exc).__name__}: {exc} (rerun with -v for the traceback)",
                       err=True)
            ctx.exit(1)

