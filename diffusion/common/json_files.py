"""Reading the project's JSON files: one EntropicError naming the file for anything that is not a
readable JSON document, never a traceback.

``json.loads`` fails in more ways than :class:`json.JSONDecodeError`: a document nested a few
thousand levels deep raises RecursionError, an integer of more than 4,300 digits ValueError
(CPython's limit on int conversion), and the file itself may be missing, unreadable or not
UTF-8. Every reader of a run, store, card, sidecar or report input goes through here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from diffusion.common.errors import EntropicError


def parse_json(text: str, where: str | os.PathLike) -> Any:
    """The JSON document ``text`` (from ``where``, named in the error)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise EntropicError(f"{where}: not valid JSON ({err.msg}, line {err.lineno})") from None
    except RecursionError:
        raise EntropicError(f"{where}: not readable JSON (nested too deeply)") from None
    except ValueError as err:  # e.g. "Exceeds the limit (4300 digits) for integer string conversion"
        raise EntropicError(f"{where}: not readable JSON ({err})") from None


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    """The JSON document in ``path``; ``what`` names it in errors ("missing store header")."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EntropicError(f"{path}: missing {what}") from None
    except UnicodeDecodeError:
        raise EntropicError(f"{path}: {what} is not UTF-8 text") from None
    except OSError as err:
        raise EntropicError(f"{path}: cannot read {what}: {err.strerror or err}") from None
    return parse_json(text, path)


def read_json_object(path: str | os.PathLike, what: str = "file") -> dict[str, Any]:
    """:func:`read_json` of a document that must be a JSON object."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise EntropicError(f"{path}: {what} must be a JSON object")
    return data
