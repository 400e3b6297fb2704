"""loss_history.csv, the run directory's loss log: written and parsed here, and nowhere else.

Header ``step,loss,lr,images_per_s``; each row is the mean loss over one logging interval.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from diffusion.common.errors import EntropicError


@dataclass(frozen=True)
class LossPoint:
    """One logged row: the training step and its (finite, positive) mean loss."""

    step: int
    loss: float


def read_loss_csv(path: str | os.PathLike) -> list[LossPoint]:
    """Read a loss_history.csv into its plottable points (see :func:`parse_loss_rows`).

    Refuses a missing or unreadable file, an empty file, a missing header and a malformed
    line, each with one EntropicError naming the file and the line number.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EntropicError(f"{path}: missing (no loss history)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise EntropicError(f"{path}: unreadable loss history ({err})") from None
    lines = list(csv.reader(io.StringIO(text)))
    if not lines or not any(cell.strip() for cell in lines[0]):
        raise EntropicError(f"{path}, line 1: empty file (expected the header step,loss,lr,images_per_s)")
    header = [cell.strip() for cell in lines[0]]
    if "step" not in header or "loss" not in header:
        raise EntropicError(
            f"{path}, line 1: expected a header with the columns step,loss (got {','.join(header)[:80]!r})"
        )
    i_step, i_loss = header.index("step"), header.index("loss")
    rows: list[tuple[Any, Any]] = []
    numbers: list[int] = []
    for number, cells in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue  # a blank line (the trailing newline) carries no row
        if len(cells) != len(header):
            raise EntropicError(f"{path}, line {number}: {len(cells)} fields, the header has {len(header)}")
        rows.append((cells[i_step], cells[i_loss]))
        numbers.append(number)
    return parse_loss_rows(rows, source=str(path), line_numbers=numbers)


def parse_loss_rows(
    rows: Iterable[Sequence[Any] | Mapping[str, Any]],
    *,
    source: str = "<loss rows>",
    line_numbers: Sequence[int] | None = None,
) -> list[LossPoint]:
    """Turn rows (``(step, loss, ...)`` tuples or ``{"step", "loss"}`` mappings) into points.

    Values may be numbers or strings. Rows with a NaN, infinite or non-positive loss are
    skipped; a row whose step or loss is not a number is refused (EntropicError naming
    ``source`` and the line), as is a history with no rows or no plottable row left.
    """
    points: list[LossPoint] = []
    count = 0
    for k, row in enumerate(rows):
        count += 1
        line = line_numbers[k] if line_numbers is not None else k + 1
        where = f"{source}, line {line}"
        try:
            step_raw, loss_raw = (row["step"], row["loss"]) if isinstance(row, Mapping) else (row[0], row[1])
        except (KeyError, IndexError, TypeError):
            raise EntropicError(f"{where}: a row needs a step and a loss") from None
        step = _parse_step(step_raw, where)
        try:
            loss = float(str(loss_raw).strip()) if isinstance(loss_raw, str) else float(loss_raw)
        except (TypeError, ValueError):
            raise EntropicError(f"{where}: loss {loss_raw!r} is not a number") from None
        if math.isfinite(loss) and loss > 0:
            points.append(LossPoint(step, loss))
    if count == 0:
        raise EntropicError(f"{source}: no rows after the header (nothing to plot)")
    if not points:
        raise EntropicError(f"{source}: none of its {count} rows has a finite, positive loss (nothing to plot)")
    points.sort(key=lambda p: p.step)  # a history is in step order; sorting costs nothing if so
    return points


def _parse_step(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise EntropicError(f"{where}: step {value!r} is not an integer")
    if isinstance(value, int):
        return value
    try:
        as_float = float(str(value).strip())
    except ValueError:
        raise EntropicError(f"{where}: step {value!r} is not an integer") from None
    if not math.isfinite(as_float) or as_float != int(as_float):
        raise EntropicError(f"{where}: step {value!r} is not an integer")
    return int(as_float)


def format_loss_history(rows: list[tuple[int, float, float, float]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["step", "loss", "lr", "images_per_s"])
    for step, loss, lr, ips in rows:
        w.writerow([step, f"{loss:.6g}", f"{lr:.6g}", f"{ips:.2f}"])
    return buf.getvalue()


def parse_loss_history(text: str, where: Path) -> list[tuple[int, float, float, float]]:
    rows = []
    try:
        for rec in csv.DictReader(io.StringIO(text)):
            rows.append((int(rec["step"]), float(rec["loss"]), float(rec["lr"]), float(rec["images_per_s"])))
    except (KeyError, ValueError, TypeError) as err:
        raise EntropicError(f"{where}: unreadable loss history ({err})") from None
    return rows
