"""The ``entropic`` command line: a thin layer over functions that the tests call directly.

Each command lives in its own module, named after it, which parses the command line and calls
the library. The modules import no library code at import time (vocabularies and defaults come
from the library when a value is parsed or a help page printed, see :mod:`render.cli.params`),
so ``entropic --help`` and the numpy-only commands start without importing torch.
Errors meant for the user (:class:`diffusion.common.errors.EntropicError`, and values a library
parser refused, :class:`render.cli.params.ValueRefused`) are printed as one line with a
non-zero exit code, never as a traceback.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import sys

import click

from diffusion.common.errors import EntropicError
from render.cli.params import ValueRefused

# command name -> "module:attribute" (each command in the module named after it); the order is
# the order of `entropic --help`.
COMMANDS = {
    "dataset": "render.cli.dataset:dataset",
    "train": "render.cli.train:train",
    "sample": "render.cli.sample:sample",
    "evaluate": "render.cli.evaluate:evaluate",
    "audit": "render.cli.audit:audit",
    "report": "render.cli.report:report",
    "publish": "render.cli.publish:publish",
    "render": "render.cli.render:render",
    "join": "render.cli.join:join",
    "preview": "render.cli.preview:preview",
    "info": "render.cli.info:info",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The commands whose modules are installed, in the order of COMMANDS."""
        return [name for name in COMMANDS if _module_exists(COMMANDS[name].split(":")[0])]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """The command ``name``, its module imported now (None if there is no such command)."""
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        if not _module_exists(module):
            return None
        return getattr(importlib.import_module(module), attr)


@functools.cache
def _module_exists(module: str) -> bool:
    """Whether the command's module is installed (looked up once: `entropic --help` asks for every one twice)."""
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="entropic")
def cli() -> None:
    """entropic: train a diffusion model on declared data, record its trajectories,
    and animate them as grids that drift toward noise."""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``entropic`` console script."""
    try:
        code = cli.main(args=argv, prog_name="entropic", standalone_mode=False)
    except EntropicError as err:
        click.echo(f"entropic: error: {err}", err=True)
        sys.exit(1)
    except ValueRefused as err:  # the library parser's message, as if the library had raised it
        click.echo(f"entropic: error: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("entropic: interrupted", err=True)
        sys.exit(130)
    except click.UsageError as err:
        # One line, like every other error; the usage text is one --help away.
        command = err.ctx.command_path if err.ctx else "entropic"
        click.echo(f"entropic: error: {err.format_message()} (see '{command} --help')", err=True)
        sys.exit(err.exit_code)
    except click.ClickException as err:
        click.echo(f"entropic: error: {err.format_message()}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("entropic: interrupted", err=True)
        sys.exit(130)
    except OSError as err:
        where = f"{err.filename}: " if err.filename else ""
        click.echo(f"entropic: error: {where}{err.strerror or err}", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
