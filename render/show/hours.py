"""Opening hours of a show (``entropic show --hours``): when the piece plays, and when it changes.

Outside opening hours the screens show their background. The schedule is wall-clock time: a
naive local :class:`datetime.datetime` (what ``datetime.datetime.now()`` returns) is read by
its fields, and nothing is shifted for daylight saving (a show that opens at 10:00 opens when
the clock on the wall says 10:00).

The grammar (case does not matter; spaces around ``-``, ``+`` and ``,`` do not matter)::

    SCHEDULE := CLAUSE ("," CLAUSE)*
    CLAUSE   := [DAYS] RANGE RANGE* | [DAYS] "closed"
    DAYS     := ITEM (["+"] ITEM)*          # "mon+wed+fri" or "mon wed fri"
    ITEM     := DAY | DAY "-" DAY | "daily" | "every day"
    DAY      := mon tue wed thu fri sat sun, or monday .. sunday
    RANGE    := TIME "-" TIME
    TIME     := H | HH | H:MM | HH:MM          # 00:00 .. 24:00, 24:00 only as an end

Examples::

    10:00-18:00                                every day, 10 to 18
    mon-fri 10-18, sat 12-16                   whole hours may drop the minutes
    tue-sun 10:00-12:00 14:00-18:00            several ranges on the same days
    mon+wed+fri 9-17                           a list of days (not "mon,wed,fri": the comma
                                               separates clauses)
    fri-mon 11-15                              a range of days may wrap: fri, sat, sun, mon
    fri 20:00-02:00                            past midnight: Friday 20:00 to Saturday 02:00
    daily 00:00-24:00                          always open
    mon-fri 10-18, sat sun closed              "closed" documents days without opening hours

The decisions, and why:

* **Clauses are separated by commas**, so a list of days is written with ``+`` or spaces:
  ``mon,wed 10-18`` would read as a clause ``mon`` without a time range, and is refused as
  such rather than guessed.
* **A clause without days means every day** (``10:00-18:00``); ``daily`` and ``every day``
  say it explicitly.
* **An end before the start runs past midnight**, and the opening belongs to the day it starts
  on (``sun 22:00-03:00`` is Sunday night into Monday 03:00, across the week's wrap). An end
  equal to the start is refused: it could mean nothing or the whole day (write
  ``00:00-24:00``). ``24:00`` is accepted as an end only.
* **A day range from a day to itself** (``mon-mon``) is refused: it could mean one day or, by
  the wrapping rule, the whole week.
* **"closed" overrides nothing**: it only documents, and it is checked. A day that another
  clause opens may not also be called closed (``daily 10-18, mon closed`` is refused instead
  of silently leaving Monday open), and a schedule that opens nowhere is refused (a show that
  never shows the piece is a mistake, not a schedule).
* **Overlapping or touching openings are merged**: ``mon 10-14, mon 12-18`` is open 10 to 18,
  and a schedule open around the whole week (``daily 0-24``) never changes.
* **The schedule is bounded**: at most :data:`MAX_OPENINGS` openings (one per day and time
  range, before merging).
* **12-hour times are refused** with a hint (``10am-6pm``): the clock is 24-hour.

Every problem is one :class:`~diffusion.common.errors.EntropicError` line naming the option,
the schedule and the bad part, e.g. ``--hours "mon-fry 10-18": unknown day "fry" (did you
mean "fri"?)``.

:func:`is_open` says whether a moment is inside the hours (an opening includes its start and
excludes its end: open at 10:00:00, closed at 18:00:00); :func:`next_change` gives the next
moment at which that answer flips. (The show's window asks :func:`is_open` at every tick,
at least twice a second, so it opens and closes on time whatever the clock does.)
"""

from __future__ import annotations

import bisect
import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from diffusion.common.errors import EntropicError
from diffusion.common.validation import did_you_mean

DAY_MINUTES = 24 * 60
WEEK_MINUTES = 7 * DAY_MINUTES
# A bound, so that a schedule cannot grow without end; 200 is 28 time ranges on every day,
# far beyond any gallery's hours.
MAX_OPENINGS = 200

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAYS = {name: i for i, name in enumerate(DAY_NAMES)} | {name: i for i, name in enumerate(_FULL_NAMES)}
_ALL_DAYS = tuple(range(7))
# The words a DAYS part may hold, for the did-you-mean of an unknown one: the short names
# first, so that "fry" is told "fri" (it is as close to "friday").
_SHORT_WORDS = (*DAY_NAMES, "daily", "every", "closed")

_US_PER_MINUTE = 60_000_000
_WEEK_US = WEEK_MINUTES * _US_PER_MINUTE

Fail = Callable[[str], EntropicError]  # a reason -> the one-line error naming option and schedule

# One token of a clause: a word (any letters, so that "mån" gets a did-you-mean rather than
# "unexpected character"), something time-like (digits with ":" or "." inside, checked as a
# whole so that "10.00" is named as a bad time), a dash (also the en dash that schedules copied
# from a web page carry), a plus, or any other single character (refused).
_TOKEN = re.compile(r"\s*(?:(?P<word>[^\W\d_]+)|(?P<time>\d[\d:.]*)|(?P<dash>[-\u2013])|(?P<plus>\+)|(?P<other>\S))")
_TIME = re.compile(r"(\d{1,2})(?::(\d{2}))?")


@dataclass(frozen=True)
class Opening:
    """One opening: on `day` (0 = Monday .. 6 = Sunday), from `start` to `end`, minutes since
    that day's midnight; end may exceed 1440 (an opening past midnight belongs to the day it
    starts)."""

    day: int
    start: int
    end: int

    def __post_init__(self) -> None:
        # The parser never builds a bad one; this guards openings built in code.
        if not (0 <= self.day <= 6 and 0 <= self.start < DAY_MINUTES and self.start < self.end <= self.start + DAY_MINUTES):
            raise ValueError(f"Opening needs day 0..6, start 0..1439 and start < end <= start + 1440, got {self!r}")


@dataclass(frozen=True)
class Week:
    """The openings of a schedule as a week: merged, sorted, in microseconds since Monday 00:00."""

    starts: tuple[int, ...]  # of each merged open interval [start, end)
    ends: tuple[int, ...]
    flips: tuple[int, ...]  # the moments at which open/closed changes, within [0, week)


@dataclass(frozen=True)
class Hours:
    """A parsed ``--hours`` schedule: the text as given and the openings it makes."""

    text: str  # as given, for logs and messages
    openings: tuple[Opening, ...]
    week: Week = field(init=False, repr=False, compare=False)  # derived from openings, once

    def __post_init__(self) -> None:
        object.__setattr__(self, "openings", tuple(self.openings))
        object.__setattr__(self, "week", _week(self.openings))


def parse_hours(text: str, option: str = "--hours") -> Hours:
    """Parse a schedule (the grammar is in this module's docstring) into :class:`Hours`.

    Raises :class:`EntropicError`, one line naming ``option``, the schedule and the bad part.
    """
    shown = _short(" ".join(text.split()), 60)

    def fail(reason: str) -> EntropicError:
        return EntropicError(f'{option} "{shown}": {reason}')

    if not text.strip():
        raise fail('empty schedule (e.g. "mon-fri 10:00-18:00, sat 12:00-16:00"; leave the option out to show always)')
    openings: set[Opening] = set()
    count = 0
    opened_by: dict[int, str] = {}  # day -> the first clause that opens it (for "closed")
    closed: list[tuple[str, tuple[int, ...]]] = []
    for raw in text.split(","):
        clause = " ".join(raw.split())
        if not clause:
            raise fail("empty clause (two commas in a row, or a comma at an end)")
        days, ranges = _parse_clause(clause, fail)
        if ranges is None:
            closed.append((clause, days))
            continue
        count += len(days) * len(ranges)
        if count > MAX_OPENINGS:
            raise fail(f"more than {MAX_OPENINGS} openings (one per day and time range); merge time ranges")
        for day in days:
            opened_by.setdefault(day, clause)
            openings.update(Opening(day, start, end) for start, end in ranges)
    for clause, days in closed:
        both = [d for d in days if d in opened_by]
        if both:
            raise fail(f'"{_short(clause, 40)}" contradicts "{_short(opened_by[both[0]], 40)}", which opens {DAY_NAMES[both[0]]} '
                       '("closed" overrides nothing; take the day out of the other clause)')
    if not openings:
        raise fail("no opening hours at all: the piece would never show")
    return Hours(text, tuple(sorted(openings, key=lambda o: (o.day, o.start, o.end))))


def is_open(hours: Hours | None, when: datetime.datetime) -> bool:
    """Whether ``when`` (local wall-clock time) is inside ``hours``; None means always open."""
    if hours is None:
        return True
    t = _week_us(when)
    i = bisect.bisect_right(hours.week.starts, t) - 1
    return i >= 0 and t < hours.week.ends[i]


def next_change(hours: Hours | None, when: datetime.datetime) -> datetime.datetime | None:
    """The first moment strictly after ``when`` at which :func:`is_open` flips.

    None when it never does: ``hours`` is None (always open), the merged openings cover the
    whole week, or (Hours built in code) there are none. The answer is ``when`` plus wall-clock time (a naive datetime stays naive).
    """
    if hours is None or not hours.week.flips:
        return None
    flips = hours.week.flips
    t = _week_us(when)
    i = bisect.bisect_right(flips, t)
    # Past the week's last flip the next one is the first, a week later.
    nxt = flips[i] if i < len(flips) else flips[0] + _WEEK_US
    return when + datetime.timedelta(microseconds=nxt - t)


def seconds_until_change(hours: Hours | None, when: datetime.datetime) -> float | None:
    """Seconds from ``when`` to :func:`next_change`, or None when the hours never change."""
    change = next_change(hours, when)
    return None if change is None else (change - when).total_seconds()


# ----------------------------------------------------------------------------- parsing


def _parse_clause(clause: str, fail: Fail) -> tuple[tuple[int, ...], list[tuple[int, int]] | None]:
    """(days, [(start, end), ...]) of one clause, or (days, None) for "DAYS closed"."""
    # Tokens cut short are never valid ones (the longest is "wednesday"), so cutting them here
    # keeps every message one line without changing what parses.
    tokens: list[tuple[str, str]] = [(m.lastgroup, _short(m.group(m.lastgroup))) for m in _TOKEN.finditer(clause)]
    pos = 0
    where = _short(clause, 40)  # the clause as messages show it

    def peek(offset: int = 0) -> tuple[str, str]:
        return tokens[pos + offset] if pos + offset < len(tokens) else ("end", "")

    days: set[int] = set()
    any_days = False
    while peek()[0] == "word" and peek()[1].lower() != "closed":
        word = peek()[1].lower()
        pos += 1
        any_days = True
        if word in ("daily", "everyday"):
            days.update(_ALL_DAYS)
        elif word == "every":
            if peek()[0] != "word" or peek()[1].lower() not in ("day", "days"):
                raise fail(f'"every" must be followed by "day" (in "{where}")')
            pos += 1
            days.update(_ALL_DAYS)
        elif word in _DAYS:
            first = _DAYS[word]
            if peek()[0] == "dash":
                kind, last_word = peek(1)
                if kind != "word":
                    raise fail(f'day range "{word}-" has no end day (in "{where}")')
                last_word = last_word.lower()
                if last_word not in _DAYS:
                    raise fail(_unknown_day(last_word))
                last = _DAYS[last_word]
                if last == first:
                    raise fail(f'day range "{word}-{last_word}" goes from a day to itself '
                               f'(write "{DAY_NAMES[first]}" for the day, "daily" for the week)')
                pos += 2
                # A range wraps over the week's end: fri-mon is fri, sat, sun, mon.
                days.update((first + k) % 7 for k in range((last - first) % 7 + 1))
            else:
                days.add(first)
        else:
            raise fail(_unknown_day(word))
        if peek()[0] == "plus":
            pos += 1
            if peek()[0] != "word" or peek()[1].lower() == "closed":
                raise fail(f'"+" must be followed by a day (in "{where}")')
    if peek()[0] == "plus":
        raise fail(f'"+" must come between days (in "{where}")')
    chosen = tuple(sorted(days)) if any_days else _ALL_DAYS

    if peek()[0] == "word":  # "closed", the only word the loop above stops at
        pos += 1
        if peek()[0] != "end":
            raise fail(f'"closed" takes no time range (in "{where}")')
        return chosen, None
    if peek()[0] == "end":
        example = f"{where} 10:00-18:00"
        raise fail(f'"{where}" has no time range (e.g. "{example}"; a list of days is "mon+wed", not "mon,wed")')

    ranges: list[tuple[int, int]] = []
    while peek()[0] != "end":
        kind, start_text = peek()
        if kind != "time":
            after = f' after "{_range_text(tokens, pos)}"' if ranges else ""
            raise fail(f'unexpected "{start_text}"{after} in "{where}" '
                       "(a clause is days, then time ranges; clauses are separated by commas)")
        pos += 1
        if peek()[0] != "dash":
            kind, value = peek()
            if kind == "word" and value.lower() in ("am", "pm"):
                raise fail(f'"{start_text}{value}": times are on the 24-hour clock (e.g. "10:00-18:00")')
            if kind == "end":
                raise fail(f'"{start_text}" is a time, not a time range (START-END, e.g. "10:00-18:00")')
            raise fail(f'unexpected "{value}" after "{start_text}" in "{where}" (a time range is START-END, e.g. "10:00-18:00")')
        pos += 1
        kind, end_text = peek()
        if kind != "time":
            raise fail(f'time range "{start_text}-" has no end time (e.g. "{start_text}-18:00")')
        pos += 1
        if peek()[0] == "word" and peek()[1].lower() in ("am", "pm"):
            raise fail(f'"{end_text}{peek()[1]}": times are on the 24-hour clock (e.g. "10:00-18:00")')
        start = _time(start_text, fail, is_end=False)
        end = _time(end_text, fail, is_end=True)
        if start == end:
            raise fail(f'"{start_text}-{end_text}" starts and ends at the same time: an opening needs a length '
                       '(all day is 00:00-24:00)')
        # An end before the start is on the next day: the opening runs past midnight.
        ranges.append((start, end if end > start else end + DAY_MINUTES))
    return chosen, ranges


def _unknown_day(word: str) -> str:
    """The reason for an unknown word where a day belongs, with the nearest day word."""
    hint = did_you_mean(word, _SHORT_WORDS) or did_you_mean(word, _FULL_NAMES)
    return f'unknown day "{_short(word)}"{hint}'


def _short(text: str, limit: int = 30) -> str:
    """``text`` cut to ``limit`` characters, so that a message stays one readable line."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _range_text(tokens: list[tuple[str, str]], pos: int) -> str:
    """The time range just before ``pos``, as written ("10-18")."""
    return "".join(value if kind != "dash" else "-" for kind, value in tokens[max(pos - 3, 0) : pos])


def _time(token: str, fail: Fail, is_end: bool) -> int:
    """Minutes since midnight of ``HH:MM`` or ``H`` (whole hours); 24:00 only as an end."""
    m = _TIME.fullmatch(token)
    hour = int(m.group(1)) if m else -1
    minute = int(m.group(2) or 0) if m else -1
    if not m or hour > 24 or minute >= 60 or (hour == 24 and minute != 0):
        raise fail(f'"{token}" is not a time of day (HH:MM, 00:00..24:00)')
    if hour == 24 and not is_end:
        raise fail(f'"{token}" is the end of a day, not a start (write 00:00)')
    return hour * 60 + minute


# ----------------------------------------------------------------------------- the week


def _week(openings: tuple[Opening, ...]) -> Week:
    """The openings as merged intervals of the week, and the moments where open/closed flips."""
    spans: list[tuple[int, int]] = []
    for o in openings:
        start, end = o.day * DAY_MINUTES + o.start, o.day * DAY_MINUTES + o.end
        if end <= WEEK_MINUTES:
            spans.append((start, end))
        else:  # Sunday past midnight: the rest is on the next week's Monday, that is, this one's
            spans += [(start, WEEK_MINUTES), (0, end - WEEK_MINUTES)]
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        # Touching intervals merge too: at their shared edge nothing flips.
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    flips = {edge % WEEK_MINUTES for span in merged for edge in span}
    if merged and merged[0][0] == 0 and merged[-1][1] == WEEK_MINUTES:
        # Open across Sunday -> Monday midnight: the week's edge joins two intervals, no flip.
        flips.discard(0)
    return Week(
        starts=tuple(s * _US_PER_MINUTE for s, _ in merged),
        ends=tuple(e * _US_PER_MINUTE for _, e in merged),
        flips=tuple(sorted(f * _US_PER_MINUTE for f in flips)),
    )


def _week_us(when: datetime.datetime) -> int:
    """Microseconds since the Monday 00:00 before ``when``, by its wall-clock fields."""
    minutes = when.weekday() * DAY_MINUTES + when.hour * 60 + when.minute
    return minutes * _US_PER_MINUTE + when.second * 1_000_000 + when.microsecond
