"""The author's answers to a datasheet's open questions: ``datasheet-answers.toml`` beside the manifest.

The questions that neither the manifest nor the image files answer (why the dataset was made,
who paid for it, whether the people in it consented, ...) are the author's to answer. They
write them in a TOML file in the dataset folder, one table per datasheet section, one string
per question, keyed as :mod:`diffusion.data.datasheet_questions` names them::

    [motivation]
    purpose = "Drawings from my sketchbooks 2019-2024, to train a model of my own line."
    funding = "Nobody: made in my own time."

    [composition]
    people = \"\"\"No. A few sketches show passers-by, too small and rough to be recognised.\"\"\"

The file is validated once, here: an unknown section or question (with a did-you-mean), a
value that is not a string, or malformed TOML is refused as one line naming the file and the
key. A blank string counts as not answered yet, so a template with empty answers is valid.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any, Mapping

from diffusion.common.atomic import atomic_write_text
from diffusion.common.errors import EntropicError
from diffusion.common.validation import (
    Invalid,
    Key,
    TableReader,
    brief,
    passthrough,
    type_name,
)
from diffusion.data.datasheet_questions import SECTIONS, question_keys

ANSWERS_NAME = "datasheet-answers.toml"
# Far more than any answers need; a larger file is a mistake, not a datasheet.
MAX_ANSWERS_BYTES = 1 << 20


def answers_path(folder: str | os.PathLike) -> Path:
    """Where the answers file of dataset folder ``folder`` lives."""
    return Path(folder) / ANSWERS_NAME


def _answer(value: Any, key: str) -> str | None:
    """Checker: a string; blank means not answered yet (None)."""
    if not isinstance(value, str):
        raise Invalid(f"must be a string (the answer's text), got {type_name(value)} ({brief(value)})")
    text = value.strip()
    return text or None


def parse_answers(raw: Any, source: str) -> dict[str, str]:
    """A parsed answers table -> {"section.question": answer}, checked against the questions.

    ``source`` names the file in errors. Blank answers are left out.
    """
    reader = TableReader(source)
    sections = reader.table(raw, {key: Key(passthrough, default={}) for key in question_keys()}, "")
    answers: dict[str, str] = {}
    for section, names in question_keys().items():
        table = reader.table(sections[section], {name: Key(_answer, default=None) for name in names}, section)
        answers.update({f"{section}.{name}": text for name, text in table.items() if text is not None})
    return answers


def read_answers(folder: str | os.PathLike) -> dict[str, str]:
    """The answers in ``folder``'s answers file, validated ({} when there is none).

    Raises EntropicError (one line naming the file, and the key where one is at fault) for an
    unreadable, oversized, non-UTF-8 or malformed file and for unknown keys or non-string values.
    """
    path = answers_path(folder)
    if not path.exists():
        return {}
    if not path.is_file():
        raise EntropicError(f"{path}: is not a file; the datasheet's answers are a TOML file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ANSWERS_BYTES + 1)
    except OSError as err:
        raise EntropicError(f"cannot read {path}: {err.strerror or err}") from None
    if len(data) > MAX_ANSWERS_BYTES:
        raise EntropicError(f"{path}: larger than {MAX_ANSWERS_BYTES >> 20} MiB; a datasheet's answers are short texts")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise EntropicError(f"{path}: not UTF-8 text (byte {err.start})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise EntropicError(f"{path}: malformed TOML: {err}") from None
    except (RecursionError, ValueError):  # nesting too deep; an integer of thousands of digits
        raise EntropicError(f"{path}: malformed TOML: nested too deeply or a number that cannot be read") from None
    return parse_answers(raw, str(path))


def _toml_string(text: str) -> str:
    # A JSON string is a TOML basic string, except that TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def answers_toml(answers: Mapping[str, str]) -> str:
    """The answers file's text for ``answers`` ({"section.question": text}), in datasheet order.

    For tools that know the answers (the default dataset's generator). Unknown keys are refused.
    """
    known = {f"{s.key}.{q.name}" for s in SECTIONS for q in s.questions}
    unknown = sorted(set(answers) - known)
    if unknown:
        raise EntropicError(f"unknown datasheet question {unknown[0]!r}")
    lines = [
        "# The datasheet's answers that only the dataset's author can give (see DATASHEET.md).",
        "# Run `entropic dataset datasheet FOLDER` after editing.",
    ]
    for section in SECTIONS:
        given = [(q.name, answers[f"{section.key}.{q.name}"]) for q in section.questions
                 if f"{section.key}.{q.name}" in answers]
        if given:
            lines += ["", f"[{section.key}]"] + [f"{name} = {_toml_string(text)}" for name, text in given]
    return "\n".join(lines) + "\n"


def write_answers(folder: str | os.PathLike, answers: Mapping[str, str]) -> Path:
    """Write ``folder``'s answers file atomically; returns its path."""
    path = answers_path(folder)
    try:
        atomic_write_text(path, answers_toml(answers))
    except OSError as err:
        raise EntropicError(f"cannot write {path}: {err.strerror or err}") from None
    return path
