"""The show's health log: JSON lines, rotated by size, and the summary `entropic show --status` prints.

One writer, the supervisor, appends one JSON object per line to ``show.jsonl`` in the log
folder: events (``start``, ``window-start``, ``restart`` with its reason, ``scene-error``,
``stop``) and, each minute, a ``minute`` record from the window process (presented frames/s,
dropped frames, the worst frame time, RSS, the frame shown, whether the show was open) to which
the supervisor adds its restart count. When the file passes ``max_bytes`` it becomes
``show.1.jsonl`` (and ``.1`` becomes ``.2`` ...; ``keep`` files in all), so weeks of minutes
take a bounded few MiB.

A log that cannot be written (a full disk, a folder gone) never stops the show: the failure
is reported once on stderr, the record dropped, and writing is tried again with the next one.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
from pathlib import Path
from collections import Counter
from typing import Any, Iterator

LOG_NAME = "show.jsonl"
MAX_BYTES = 1 << 20  # ~5,000 minute records: three and a half days per file
KEEP = 5


def log_files(folder: Path, keep: int = KEEP) -> list[Path]:
    """The log's files, oldest first."""
    names = [f"show.{i}.jsonl" for i in range(keep - 1, 0, -1)] + [LOG_NAME]
    return [folder / n for n in names if (folder / n).is_file()]


def now_text() -> str:
    """The local time with its offset, to the second (how records are stamped)."""
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


class HealthLog:
    """Appends records to ``folder/show.jsonl``, rotating it; never raises on a write."""

    def __init__(self, folder: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.keep = keep
        self.failing = False  # the last write failed (reported once until one succeeds)

    def write(self, record: dict[str, Any]) -> bool:
        """Append ``record`` (stamped with the time unless it has one); False when it could not be written."""
        data = (_json_line({"time": now_text(), **record}) + "\n").encode("utf-8")
        path = self.folder / LOG_NAME
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size + len(data) > self.max_bytes:
                self._rotate()
            # One write() per record in append mode: a line is never interleaved with another.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                size = os.fstat(fd).st_size
                written = os.write(fd, data)
                if written != len(data):  # a disk that filled mid-line: take the torn line back
                    os.ftruncate(fd, size)
                    raise OSError(28, "No space left on device")
            finally:
                os.close(fd)
        except OSError as err:
            if not self.failing:
                _say(f"entropic show: cannot write the health log {path} ({err.strerror or err}); the show goes on")
            self.failing = True
            return False
        if self.failing:
            _say(f"entropic show: the health log {path} is written again")
        self.failing = False
        return True

    def _rotate(self) -> None:
        oldest = self.folder / f"show.{self.keep - 1}.jsonl"
        if oldest.exists():
            oldest.unlink()
        for i in range(self.keep - 2, 0, -1):
            src = self.folder / f"show.{i}.jsonl"
            if src.exists():
                os.replace(src, self.folder / f"show.{i + 1}.jsonl")
        os.replace(self.folder / LOG_NAME, self.folder / "show.1.jsonl")


def _json_line(record: dict[str, Any]) -> str:
    """One line of JSON; a number that is not finite is written as null (JSON has no NaN)."""
    try:
        return json.dumps(record, sort_keys=True, allow_nan=False, default=str)
    except ValueError:
        clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
        return json.dumps(clean, sort_keys=True, allow_nan=False, default=str)


def _say(line: str) -> None:
    """A line on stderr, if stderr still takes one (a closed terminal must not stop the show)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def read_records(folder: Path) -> Iterator[dict[str, Any]]:
    """Every readable record of the log, oldest first; lines that do not parse are skipped."""
    for path in log_files(Path(folder)):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by a full disk
            if isinstance(record, dict):
                yield record


def summarise(folder: Path, last_hours: float = 24.0) -> dict[str, Any]:
    """What the log says about the latest show in ``folder``: since its start, and the last ``last_hours``."""
    records = list(read_records(folder))
    starts = [i for i, r in enumerate(records) if r.get("event") == "start"]
    session = records[starts[-1]:] if starts else records
    minutes = [r for r in session if r.get("event") == "minute"]
    cutoff = None
    if minutes:
        try:
            cutoff = dt.datetime.fromisoformat(str(minutes[-1]["time"])) - dt.timedelta(hours=last_hours)
        except (KeyError, ValueError):
            cutoff = None
    recent = [m for m in minutes if cutoff is None or _after(m, cutoff)]
    shown = [m for m in recent if m.get("open", True) and not m.get("held")]  # open and playing
    open_recent = [m for m in shown if isinstance(m.get("fps"), (int, float))]
    restarts = [r for r in session if r.get("event") == "restart"]
    errors = [r for r in session if r.get("event") in ("scene-error", "window-error")]
    rss = [m["rss_mib"] for m in minutes if isinstance(m.get("rss_mib"), (int, float))]
    return {
        "records": len(records),
        "started": session[0].get("time") if session else None,
        "stopped": next((r.get("time") for r in reversed(session) if r.get("event") == "stop"), None),
        "scene": next((r.get("scene") for r in reversed(session) if r.get("scene")), None),
        "minutes": len(minutes),
        "last": minutes[-1] if minutes else None,
        "restarts": len(restarts),
        "restart_reasons": dict(Counter(str(r.get("reason", "?")) for r in restarts)),
        "last_restart": restarts[-1] if restarts else None,
        "last_error": errors[-1] if errors else None,
        "recent_hours": last_hours,
        "recent_dropped": sum(int(m.get("dropped", 0)) for m in recent),
        "recent_min_fps": min((m["fps"] for m in open_recent), default=None),
        "recent_worst_frame_ms": max((m.get("worst_frame_ms", 0.0) for m in open_recent), default=None),
        "rss_first_mib": rss[0] if rss else None,
        "rss_last_mib": rss[-1] if rss else None,
    }


def _after(record: dict[str, Any], cutoff: dt.datetime) -> bool:
    try:
        return dt.datetime.fromisoformat(str(record["time"])) >= cutoff
    except (KeyError, ValueError, TypeError):
        return False


def format_status(summary: dict[str, Any], running: bool | None, folder: Path) -> str:
    """The summary as a few lines a person reads."""
    if not summary["records"]:
        return f"no show has written to {folder} yet"
    state = {True: "running", False: "not running", None: "unknown"}[running]
    lines = [f"show: {state}, started {summary['started']}" + (f", stopped {summary['stopped']}" if summary["stopped"] and not running else "")]
    if summary["scene"]:
        lines.append(f"scene: {summary['scene']}")
    last = summary["last"]
    if last:
        mode = "open" if last.get("open", True) else "closed (outside its hours)"
        lines.append(
            f"last minute ({last.get('time')}): {mode}, {last.get('fps', 0):.1f} frames/s presented, "
            f"{last.get('dropped', 0)} dropped, worst frame {last.get('worst_frame_ms', 0):.1f} ms, "
            f"frame {last.get('frame')}, RSS {last.get('rss_mib', 0):.0f} MiB"
        )
    hours = summary["recent_hours"]
    if summary["minutes"]:
        fps = summary["recent_min_fps"]
        worst = summary["recent_worst_frame_ms"]
        lines.append(
            f"last {hours:g} h: {summary['recent_dropped']} frames dropped"
            + (f", lowest {fps:.1f} frames/s" if fps is not None else "")
            + (f", worst frame {worst:.1f} ms" if worst is not None else "")
            + f"; RSS {summary['rss_first_mib']:.0f} -> {summary['rss_last_mib']:.0f} MiB"
        )
    reasons = ", ".join(f"{n} {why}" for why, n in sorted(summary["restart_reasons"].items()))
    lines.append(f"restarts: {summary['restarts']}" + (f" ({reasons})" if reasons else ""))
    if summary["last_restart"]:
        r = summary["last_restart"]
        lines.append(f"last restart: {r.get('time')} ({r.get('reason')}{': ' + r['detail'] if r.get('detail') else ''})")
    if summary["last_error"]:
        e = summary["last_error"]
        lines.append(f"last error: {e.get('time')}: {e.get('message')}")
    return "\n".join(lines)
