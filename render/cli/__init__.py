"""The ``entropic`` command line: a thin layer over functions that the tests call directly.

Each command lives in its own module, named after it, which parses the command line and calls
the library. The modules import no library code at import time (vocabularies and defaults come
from the library when a value is parsed or a help page printed, see :mod:`render.cli.params`),
so ``entropic --help`` and the numpy-only commands start without importing torch.
Errors meant for the user (:class:`diffusion.common.errors.EntropicError`, and values a library
parser refused, :class:`render.cli.params.ValueRefused`) are printed as one line with a
non-zero exit code, never as a traceback; so is anything else that escapes a command
(:func:`failure_message`), naming the command and what went wrong.
"""

from __future__ import annotations

import errno
import functools
import importlib
import importlib.util
import os
import sys
from typing import NoReturn

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
    "verify": "render.cli.verify:verify",
    "credentials": "render.cli.credentials:credentials",
    "preview": "render.cli.preview:preview",
    "show": "render.cli.show:show",
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


DEBUG_ENV = "ENTROPIC_DEBUG"  # set (to anything) to see the traceback of an unexpected failure


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``entropic`` console script.

    Every failure ends here as one line on stderr with a non-zero exit status: the user's
    errors as the library phrased them, and failures that no check foresaw (out of memory,
    input nested too deeply, text or names that are not UTF-8, a full disk, a permission, a
    bug) as a line naming the command and what went wrong (see :func:`failure_message`).
    With ``ENTROPIC_DEBUG`` set, those unforeseen failures show their traceback instead.
    """
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        code = cli.main(args=args, prog_name="entropic", standalone_mode=False)
    except EntropicError as err:
        _fail(str(err), 1)
    except ValueRefused as err:  # the library parser's message, as if the library had raised it
        _fail(err.format_message(), err.exit_code)
    except click.exceptions.Abort:
        _interrupted()
    except click.UsageError as err:
        # One line, like every other error; the usage text is one --help away.
        command = err.ctx.command_path if err.ctx else "entropic"
        _fail(f"{err.format_message()} (see '{command} --help')", err.exit_code)
    except click.ClickException as err:
        _fail(err.format_message(), err.exit_code)
    except KeyboardInterrupt:
        _interrupted()
    except Exception as err:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if os.environ.get(DEBUG_ENV) and not isinstance(err, OSError):
            raise
        _fail(failure_message(command_name(args), err), 1)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(f"entropic: error: {one_line(message)}", err=True)
    sys.exit(code)


def _interrupted() -> NoReturn:
    click.echo("entropic: interrupted", err=True)
    sys.exit(130)


def one_line(text: str) -> str:
    """``text`` on one line: errors are one line even when a message (a tool's output) spans several."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def command_name(args: list[str]) -> str:
    """``entropic render`` (``entropic dataset init``) for the arguments, as messages name the command."""
    words = [arg for arg in args if not arg.startswith("-")]
    if not words or words[0] not in COMMANDS:
        return "entropic"
    if words[0] == "dataset" and len(words) > 1 and words[1] in ("init", "check", "default", "datasheet"):
        return f"entropic dataset {words[1]}"
    return f"entropic {words[0]}"


def failure_message(command: str, err: BaseException) -> str:
    """The line for a failure no check caught: the command, and what went wrong where it is known.

    Out of memory, recursion too deep (nesting in some input), text or names that are not
    UTF-8, and operating-system errors (a full disk, a permission: named by the path) each say
    so plainly; anything else is a bug in entropic, named by its type and message.
    """
    where = f"`{command}`"
    if isinstance(err, OSError):
        return os_error_message(err, command)
    if isinstance(err, MemoryError):
        detail = f" ({one_line(str(err))})" if str(err) else ""
        return f"{where} ran out of memory{detail}; ask for less (smaller sizes, counts or batches) or free memory"
    if isinstance(err, RecursionError):
        return f"{where}: an input is nested too deeply to read ({one_line(str(err))}); check the files it was given"
    if isinstance(err, UnicodeEncodeError) and _has_undecodable_bytes(err.object[err.start : err.end]):
        return (
            f"{where}: a file or folder name is not valid UTF-8 ({_show_name(err.object, err.start, err.end)}); "
            "entropic records names as UTF-8 text: rename it"
        )
    if isinstance(err, UnicodeDecodeError):
        return (
            f"{where}: text that is not valid {err.encoding} ({err.reason} at byte {err.start}); "
            "check the files it was given"
        )
    if isinstance(err, UnicodeError):
        return f"{where}: {type(err).__name__}: {one_line(str(err))}"
    detail = one_line(str(err)) or "no message"
    return (
        f"{where} failed unexpectedly: {type(err).__name__}: {detail} "
        f"(a bug in entropic; {DEBUG_ENV}=1 shows where)"
    )


def os_error_message(err: OSError, command: str) -> str:
    """``PATH: No space left on device``: the operating system's reason, named by the user's path.

    A failed rename of a temporary (``.NAME.<pid>.tmp``) names the file it was to become.
    """
    path = err.filename if err.filename is not None else err.filename2
    if _temporary_target(path) is not None:
        # The user knows the file being written, not our temporary name for it.
        path = err.filename2 if err.filename2 is not None else _temporary_target(path)
    reason = err.strerror or one_line(str(err)) or type(err).__name__
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        reason += "; free some space and run the same command again"
    if path is None:
        return f"`{command}`: {reason}"
    shown = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    return f"{shown}: {reason}"


def _temporary_target(name: object) -> str | None:
    """The path a temporary (``DIR/.NAME.<pid>.tmp``) stands for; None for any other name."""
    if not isinstance(name, (str, bytes, os.PathLike)):
        return None
    from diffusion.common.atomic import parse_temporary

    path = os.fsdecode(name)
    parsed = parse_temporary(os.path.basename(path))
    return None if parsed is None else os.path.join(os.path.dirname(path), parsed.name)


def _has_undecodable_bytes(text: str) -> bool:
    """Whether ``text`` holds bytes of a name that were not UTF-8 (Python keeps them as lone surrogates)."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


# What ends a name inside the text being written (a path, JSON, HTML, Markdown).
_NAME_ENDS = ("/", "\\", '"', "'", "<", ">", " ", "\t", "\n", "\x00")


def _show_name(text: str, start: int, end: int) -> str:
    """The name around ``text[start:end]``, its undecodable bytes written as \\xNN."""
    left = max(text.rfind(sep, 0, start) for sep in _NAME_ENDS) + 1
    rights = [i for i in (text.find(sep, end) for sep in _NAME_ENDS) if i >= 0]
    right = min(rights) if rights else len(text)
    name = text[left:right][:200]
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file system byte becomes
        return name.encode("utf-8", "backslashreplace").decode("utf-8")
