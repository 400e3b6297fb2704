"""What the command line's options are made of: value types, vocabularies and defaults, all from the library.

* :class:`Size`, :class:`FrameRange`, :class:`Shard` parse with the library's own parsers
  (:func:`render.canvas_size.parse_size`, :func:`render.export.parse_frames`,
  :func:`diffusion.record.parse_shard`), so one parser serves the library and the command line;
  :class:`IntList` reads ``1,2,4``. A value they refuse is reported with the parser's message,
  which names the option and the value, as one line with exit status 1 (:class:`ValueRefused`).
* :class:`LibraryChoice` is a :class:`click.Choice` over a vocabulary constant of the library
  (``"render.video_sink:X264_PRESETS"``).
* :func:`option` declares an option whose default is the library's (a dataclass field or a
  keyword default, :func:`defaults_of`): the command passes the option on only when it was
  given (:func:`given`), and ``--help`` shows the library's value.

Nothing here imports the library (beyond its errors) until a value is converted or a help page
is printed, so
``entropic --help`` stays as light as click itself (no numpy, no torch).
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any, Callable, Mapping

import click

from diffusion.common.errors import EntropicError

Defaults = Callable[[], Mapping[str, Any]]


def library_object(spec: str) -> Any:
    """The object named by ``"package.module:name"``, imported now."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


@functools.cache
def _defaults(spec: str) -> dict[str, Any]:
    import dataclasses
    import inspect

    obj = library_object(spec)
    if dataclasses.is_dataclass(obj):
        from diffusion.common.validation import defaults

        return defaults(obj)
    return {
        name: p.default for name, p in inspect.signature(obj).parameters.items() if p.default is not inspect.Parameter.empty
    }


def defaults_of(spec: str) -> Defaults:
    """A loader of the defaults of the dataclass or function ``spec`` (``"module:name"``).

    Calling it imports the module (once) and returns {field or keyword: default}.
    """
    return functools.partial(_defaults, spec)


def given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that were given (not None): what a command passes on, leaving the rest to the library's defaults."""
    return {name: value for name, value in options.items() if value is not None}


def show_value(value: Any) -> str:
    """How a default reads in ``--help``: ``1,2,4,8`` for a tuple (``none`` when empty), on/off for a boolean."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value) or "none"
    return str(value)


class LibraryOption(click.Option):
    """An option whose default is the library's, read when it is needed and never copied here.

    ``defaults`` loads {name: default} (:func:`defaults_of`), looked up under the option's
    name; ``note`` is appended to the default in ``--help``.
    Without ``resolve`` the option's value stays None unless given, and the library fills
    it in; with ``resolve`` the command receives the library's default.
    """

    def __init__(
        self,
        *args: Any,
        defaults: Defaults,
        note: str = "",
        resolve: bool = False,
        **kwargs: Any,
    ) -> None:
        if resolve:
            kwargs["default"] = lambda: self.library_default()
        super().__init__(*args, **kwargs)
        self.defaults = defaults
        self.note = note

    def library_default(self) -> Any:
        """The library's default for this option (None when it has none)."""
        return self.defaults().get(self.name)

    def get_help_extra(self, ctx: click.Context) -> Any:
        """Click's help extras, with the library's default (and the note) as the default."""
        extra = super().get_help_extra(ctx)
        value = self.library_default()
        if value is None:
            extra.pop("default", None)
        else:
            extra["default"] = show_value(value) + self.note
        return extra


def option(*param_decls: str, defaults: Defaults, **attrs: Any) -> Callable[[Any], Any]:
    """``click.option`` for a :class:`LibraryOption` (``defaults``, ``note``, ``resolve`` as there)."""
    return click.option(*param_decls, cls=LibraryOption, defaults=defaults, **attrs)


# -- vocabularies ----------------------------------------------------------------------------------


class LibraryChoice(click.Choice):
    """``click.Choice`` over the library's vocabulary ``spec`` (``"module:NAME"``: a tuple, or a dict's keys).

    The module is imported when the choices are first needed (converting a value, or --help).
    """

    def __init__(self, spec: str, case_sensitive: bool = True) -> None:
        self.spec = spec
        self.case_sensitive = case_sensitive

    @functools.cached_property
    def choices(self) -> tuple[str, ...]:  # type: ignore[override]
        """The vocabulary, imported on first use."""
        return tuple(library_object(self.spec))


# -- values parsed by the library ----------------------------------------------------------------


class ValueRefused(click.BadParameter):
    """A value the library's parser refused. Its message names the option and the value already,
    so it is shown as it is, like any other error of the user's (exit status 1)."""

    exit_code = 1

    def format_message(self) -> str:
        """The parser's own message."""
        return self.message


class LibraryType(click.ParamType):
    """A parameter type whose parser is the library's; its EntropicError becomes :class:`ValueRefused`."""

    metavar = "VALUE"

    def parse(self, text: str, param: click.Parameter | None) -> Any:
        """Turn the text given on the command line into the value (raise EntropicError if it is not one)."""
        raise NotImplementedError

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Parse ``value`` (text from the command line; already parsed values pass through)."""
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value, param)
        except EntropicError as err:
            self.fail(str(err), param, ctx)
        except ValueError:  # int() of a number of thousands of digits, which no parser expects
            shown = value if len(value) <= 40 else value[:37] + "..."
            self.fail(f"{_option_name(param)} {shown!r}: a number too long to read", param, ctx)

    def fail(self, message: str, param: click.Parameter | None = None, ctx: click.Context | None = None) -> Any:
        """Raise :class:`ValueRefused` with ``message``."""
        raise ValueRefused(message, ctx=ctx, param=param)

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        """How the value is written in ``--help``."""
        return self.metavar


class Size(LibraryType):
    """``WxH`` → (w, h), by :func:`render.canvas_size.parse_size`."""

    name = "size"
    metavar = "WxH"

    def parse(self, text: str, param: click.Parameter | None) -> tuple[int, int] | None:
        """``"1280x720"`` → (1280, 720)."""
        from render.canvas_size import parse_size

        return parse_size(text)


class FrameRange(LibraryType):
    """``A:B`` → (a, b), the half-open range's syntax by :func:`render.export.parse_frames`.

    An omitted STOP stays None (``900:`` → (900, None); ``:900`` → (0, 900)); the range is
    checked against the scene's timeline by the library, once the scene is loaded.
    """

    name = "frame range"
    metavar = "START:STOP"
    _UNBOUNDED = 2**62  # a timeline no range exceeds: parse_frames then checks the syntax only

    def parse(self, text: str, param: click.Parameter | None) -> tuple[int | None, int | None]:
        """``"900:1800"`` → (900, 1800)."""
        from render.export import parse_frames

        start, stop = parse_frames(text, self._UNBOUNDED)
        # An omitted STOP is the timeline's end: it moves with the timeline, a given one does not.
        open_end = parse_frames(text, self._UNBOUNDED + 1)[1] != stop
        return start, (None if open_end else stop)


class Shard(LibraryType):
    """``K/N`` → (k, n), by :func:`diffusion.record.parse_shard`."""

    name = "shard"
    metavar = "K/N"

    def parse(self, text: str, param: click.Parameter | None) -> tuple[int, int] | None:
        """``"0/4"`` → (0, 4)."""
        from diffusion.record_settings import parse_shard

        return parse_shard(text)


class IntList(LibraryType):
    """``1,2,4`` → (1, 2, 4); ``none`` or nothing → () (e.g. no attention resolutions)."""

    name = "integer list"
    metavar = "N,N,..."

    def parse(self, text: str, param: click.Parameter | None) -> tuple[int, ...]:
        """``"1,2,2,4"`` → (1, 2, 2, 4)."""
        cleaned = text.strip().lower()
        if cleaned in ("", "none"):
            return ()
        try:
            return tuple(int(part) for part in cleaned.split(","))
        except ValueError:
            name = _option_name(param)
            raise EntropicError(f"{name} {text!r}: expected comma-separated integers such as 1,2,2,4") from None


def _option_name(param: click.Parameter | None) -> str:
    """``--channel-mults`` for the option, as the messages name it."""
    if param is None:
        return "value"
    long = [opt for opt in getattr(param, "opts", []) if opt.startswith("--")]
    return long[0] if long else f"--{(param.name or 'value').replace('_', '-')}"


PATH = click.Path(path_type=Path)
"""A path, not checked by click: a missing or wrong path is reported by the library as one line."""


# -- content credentials ---------------------------------------------------------------------------

def credential_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--no-sign`` and ``--training-mining``, shared by every command that exports a file."""
    command = click.option(
        "--training-mining", type=LibraryChoice("render.credentials.keys:TRAINING_MINING"), default=None,
        help="The credential's training-and-data-mining choice for this file (default: the one "
             "given to `entropic credentials init`, else notAllowed).")(command)
    return click.option(
        "--no-sign", "no_sign", is_flag=True,
        help="Leave out the signed C2PA content credential (the provenance metadata and sidecar stay).")(command)
