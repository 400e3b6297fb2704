"""Opening hours: the grammar, its one-line errors, and is_open / next_change around midnight,
the week's wrap and a schedule that never closes."""

from __future__ import annotations

import bisect
import datetime as dt
import random

import pytest

from diffusion.common.errors import EntropicError
from render.show.hours import (
    MAX_OPENINGS,
    Hours,
    Opening,
    is_open,
    next_change,
    parse_hours,
    seconds_until_change,
)

MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def at(day: int, clock: str = "00:00", week: int = 0) -> dt.datetime:
    """A moment of the week starting Monday 2024-01-01: ``at(FRI, "20:00:30.5")``."""
    hms, _, frac = clock.partition(".")
    h, m, *s = (int(x) for x in hms.split(":"))
    micro = int((frac + "000000")[:6]) if frac else 0
    return dt.datetime(2024, 1, 1 + day + 7 * week, h, m, s[0] if s else 0, micro)


def openings(text: str) -> set[tuple[int, int, int]]:
    return {(o.day, o.start, o.end) for o in parse_hours(text).openings}


def refused(text: str, option: str = "--hours") -> str:
    with pytest.raises(EntropicError) as err:
        parse_hours(text, option)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f'{option} "')
    return message


# ----------------------------------------------------------------------------- the grammar


def test_a_range_alone_is_every_day():
    assert openings("10:00-18:00") == {(d, 600, 1080) for d in range(7)}


def test_clauses_days_and_ranges():
    assert openings("mon-fri 10:00-18:00, sat 12:00-16:00") == {(d, 600, 1080) for d in range(5)} | {(SAT, 720, 960)}


def test_full_names_case_and_spaces_do_not_matter():
    spelt = openings("  Monday - FRIDAY 10:00 - 18:00 ,Saturday   12:00-16:00 ")
    assert spelt == openings("mon-fri 10:00-18:00, sat 12:00-16:00")


def test_whole_hours_and_mixed_forms():
    assert openings("mon 9-17") == openings("mon 09-17") == openings("mon 09:00-17:00") == {(MON, 540, 1020)}
    assert openings("mon 9-17:30") == {(MON, 540, 1050)}


def test_a_day_range_wraps_over_the_week_end():
    assert {d for d, _, _ in openings("fri-mon 11-15")} == {FRI, SAT, SUN, MON}
    assert {d for d, _, _ in openings("sun-tue 11-15")} == {SUN, MON, TUE}


def test_a_list_of_days_with_plus_or_spaces():
    expected = {(d, 540, 1020) for d in (MON, WED, FRI)}
    assert openings("mon+wed+fri 9-17") == openings("mon wed fri 9-17") == openings("mon + wed+ fri 9-17") == expected
    assert {d for d, _, _ in openings("mon-tue+fri 9-17")} == {MON, TUE, FRI}


@pytest.mark.parametrize("days", ["daily", "every day", "Every Days", "everyday", "mon-sun", "mon tue wed thu fri sat sun"])
def test_every_day_spelt_out(days):
    assert openings(f"{days} 10-18") == openings("10-18")


def test_several_ranges_in_one_clause():
    assert openings("mon-fri 10:00-12:00 14:00-18:00") == {(d, s, e) for d in range(5) for s, e in ((600, 720), (840, 1080))}


def test_24_00_is_an_end_and_so_is_midnight_after_a_later_start():
    assert openings("mon 22:00-24:00") == openings("mon 22:00-00:00") == {(MON, 1320, 1440)}
    assert openings("mon 0-24") == {(MON, 0, 1440)}


def test_an_end_before_the_start_runs_past_midnight_on_the_day_it_starts():
    assert openings("fri 20:00-02:00") == {(FRI, 1200, 1560)}
    assert openings("sun 22-3") == {(SUN, 1320, 1620)}


def test_the_en_dash_of_a_copied_schedule_is_a_dash():
    assert openings("mon\u2013fri 10\u201318") == openings("mon-fri 10-18")


def test_closed_documents_days_and_adds_nothing():
    hours = parse_hours("mon-fri 10-18, sat+sun closed")
    assert hours.openings == parse_hours("mon-fri 10-18").openings
    assert hours.text == "mon-fri 10-18, sat+sun closed"  # as given


def test_openings_are_sorted_and_repeated_ones_kept_once():
    hours = parse_hours("tue 10-12, mon 14-16, mon 10-12, tue 10-12")
    assert hours.openings == (Opening(MON, 600, 720), Opening(MON, 840, 960), Opening(TUE, 600, 720))


# ----------------------------------------------------------------------------- the errors


@pytest.mark.parametrize(
    "text,names",
    [
        ("mon-fry 10:00-18:00", 'unknown day "fry" (did you mean "fri"?)'),
        ("wednesdya 10-12", 'unknown day "wednesdya" (did you mean "wednesday"?)'),
        ("mon-xyz 10-12", 'unknown day "xyz"'),
        ("25:00-26:00", '"25:00" is not a time of day (HH:MM, 00:00..24:00)'),
        ("mon 10:60-12", '"10:60" is not a time of day'),
        ("mon 10-24:30", '"24:30" is not a time of day'),
        ("mon 10.00-18.00", '"10.00" is not a time of day'),
        ("mon 1000-1800", '"1000" is not a time of day'),
        ("mon 9:5-10", '"9:5" is not a time of day'),
        ("mon 24:00-02:00", '"24:00" is the end of a day, not a start'),
        ("", "empty schedule"),
        ("   ", "empty schedule"),
        ("mon 10-18,,tue 10-12", "empty clause"),
        ("mon 10-18,", "empty clause"),
        ("mon-fri", '"mon-fri" has no time range'),
        ("mon,wed 10-18", '"mon" has no time range'),
        ("mon 10-18 tue 10-12", 'unexpected "tue" after "10-18"'),
        ("10-18 mon", 'unexpected "mon" after "10-18"'),
        ("mon 10-18 ; tue 10-18", 'unexpected ";"'),
        ("mon 10-18-20", 'unexpected "-" after "10-18"'),
        ("mon 10:00", '"10:00" is a time, not a time range'),
        ("mon 10-", 'time range "10-" has no end time'),
        ("mon 10 x", 'unexpected "x" after "10"'),
        ("10am-6pm", '"10am": times are on the 24-hour clock'),
        ("10-6pm", '"6pm": times are on the 24-hour clock'),
        ("mon 10-10", '"10-10" starts and ends at the same time'),
        ("daily 06:00-6", '"06:00-6" starts and ends at the same time'),
        ("mon-mon 10-12", 'day range "mon-mon" goes from a day to itself'),
        ("mon- 10-12", 'day range "mon-" has no end day'),
        ("mon+ 10-18", '"+" must be followed by a day'),
        ("mon+closed", '"+" must be followed by a day'),
        ("+mon 10-18", '"+" must come between days'),
        ("every 10-18", '"every" must be followed by "day"'),
        ("mon closed 10-18", '"closed" takes no time range'),
        ("daily 10-18, mon closed", '"mon closed" contradicts "daily 10-18", which opens mon'),
        ("mon closed", "no opening hours at all"),
    ],
)
def test_errors_are_one_line_naming_the_bad_part(text, names):
    message = refused(text)
    assert names in message
    assert message.startswith(f'--hours "{" ".join(text.split())}": ')


def test_the_error_names_the_option_it_is_given():
    assert refused("mon 25-26", option="--show-hours").startswith('--show-hours "mon 25-26": ')


def test_the_number_of_openings_is_bounded():
    ranges = " ".join(f"{h:02d}:00-{h:02d}:30" for h in range(24))  # 24 ranges a day
    # 7 * 24 = 168 openings fit; 8 days' worth more do not.
    assert len(parse_hours(f"daily {ranges}").openings) == 168 <= MAX_OPENINGS
    message = refused(f"daily {ranges}, mon-tue {ranges}")
    assert f"more than {MAX_OPENINGS} openings" in message


def test_a_huge_value_still_makes_a_short_line():
    message = refused("x" * 10_000 + " 10-18")
    assert len(message) < 200 and "unknown day" in message
    assert len(refused("mon " + "1" * 10_000 + "-2")) < 200


# ----------------------------------------------------------------------------- is_open, next_change


def test_none_is_always_open_and_never_changes():
    assert is_open(None, at(WED, "03:00")) is True
    assert next_change(None, at(WED, "03:00")) is None
    assert seconds_until_change(None, at(WED, "03:00")) is None


def test_an_opening_includes_its_start_and_excludes_its_end():
    hours = parse_hours("mon-fri 10-18")
    assert not is_open(hours, at(MON, "09:59:59.999999"))
    assert is_open(hours, at(MON, "10:00"))
    assert is_open(hours, at(MON, "17:59:59.999999"))
    assert not is_open(hours, at(MON, "18:00"))
    assert not is_open(hours, at(SAT, "12:00"))


def test_seconds_matter():
    hours = parse_hours("mon-fri 10-18")
    assert next_change(hours, at(MON, "17:59:30")) == at(MON, "18:00")
    assert seconds_until_change(hours, at(MON, "17:59:30")) == 30.0
    assert seconds_until_change(hours, at(MON, "17:59:59.999999")) == pytest.approx(1e-6)


def test_at_a_boundary_the_next_change_is_strictly_after():
    hours = parse_hours("mon-fri 10-18")
    assert next_change(hours, at(MON, "18:00")) == at(TUE, "10:00")
    assert next_change(hours, at(MON, "10:00")) == at(MON, "18:00")
    # Friday's close: the next opening is Monday's, across the weekend.
    assert next_change(hours, at(FRI, "18:00")) == at(MON, "10:00", week=1)


def test_an_opening_past_midnight():
    hours = parse_hours("fri 20:00-02:00")
    assert is_open(hours, at(FRI, "23:59:59.5")) and is_open(hours, at(SAT, "01:59:59"))
    assert not is_open(hours, at(SAT, "02:00")) and not is_open(hours, at(FRI, "02:00"))
    assert next_change(hours, at(FRI, "21:00")) == at(SAT, "02:00")
    assert next_change(hours, at(SAT, "02:00")) == at(FRI, "20:00", week=1)


def test_no_change_at_a_midnight_that_two_openings_meet_at():
    hours = parse_hours("mon 20-24, tue 0-2")
    assert next_change(hours, at(MON, "21:00")) == at(TUE, "02:00")
    assert is_open(hours, at(TUE, "00:00"))


def test_the_week_wraps_from_sunday_to_monday():
    hours = parse_hours("sun 22:00-03:00")
    assert is_open(hours, at(MON, "01:00")) and is_open(hours, at(SUN, "23:00"))
    assert not is_open(hours, at(MON, "03:00"))
    assert next_change(hours, at(SUN, "23:00")) == at(MON, "03:00", week=1)
    assert next_change(hours, at(MON, "01:00")) == at(MON, "03:00")
    assert next_change(hours, at(MON, "04:00")) == at(SUN, "22:00")
    assert next_change(hours, at(SAT, "12:00")) == at(SUN, "22:00")


def test_no_change_at_the_week_edge_when_open_across_it():
    hours = parse_hours("sun 12-24, mon 0-12")
    assert next_change(hours, at(SUN, "13:00")) == at(MON, "12:00", week=1)


def test_a_change_at_the_week_edge_is_one():
    closes = parse_hours("sun 12-24")
    assert next_change(closes, at(SUN, "13:00")) == at(MON, "00:00", week=1)
    opens = parse_hours("mon 0-1")
    assert next_change(opens, at(SUN, "13:00")) == at(MON, "00:00", week=1)
    # Open all week but Monday's first minute: the two flips sit either side of the edge.
    almost = parse_hours("mon 00:01-24:00, tue-sun 0-24")
    assert next_change(almost, at(WED, "12:00")) == at(MON, "00:00", week=1)
    assert next_change(almost, at(MON, "00:00")) == at(MON, "00:01")
    assert not is_open(almost, at(MON, "00:00:30"))


def test_one_opening_a_week_is_a_week_away_at_most():
    hours = parse_hours("wed 10-11")
    assert next_change(hours, at(WED, "11:00")) == at(WED, "10:00", week=1)
    assert next_change(hours, at(WED, "10:59:59")) == at(WED, "11:00")


def test_overlapping_and_touching_openings_merge():
    for text in ("mon 10-14, mon 12-18", "mon 10-12 12-18", "mon 10-18 11-12"):
        assert next_change(parse_hours(text), at(MON, "11:00")) == at(MON, "18:00"), text


@pytest.mark.parametrize(
    "text",
    ["daily 0-24", "00:00-24:00", "mon-sun 0-24",
     "daily 18:00-06:00, daily 06:00-18:00", "mon-wed 0-24, thu-sun 0-24", "sat 12-12:30, daily 0-24"],
)
def test_open_around_the_week_never_changes(text):
    hours = parse_hours(text)
    rng = random.Random(7)
    for _ in range(50):
        when = at(0) + dt.timedelta(seconds=rng.uniform(0, 14 * 86400))
        assert is_open(hours, when)
        assert next_change(hours, when) is None
        assert seconds_until_change(hours, when) is None


def test_an_aware_datetime_is_read_by_its_wall_clock_and_stays_aware():
    tz = dt.timezone(dt.timedelta(hours=2))
    hours = parse_hours("mon 10-18")
    when = at(MON, "17:00").replace(tzinfo=tz)
    assert is_open(hours, when)
    assert next_change(hours, when) == at(MON, "18:00").replace(tzinfo=tz)


def test_hours_built_in_code():
    hours = Hours("by hand", [Opening(MON, 600, 720)])  # a list is kept as a tuple
    assert hours.openings == (Opening(MON, 600, 720),)
    assert hours == Hours("by hand", (Opening(MON, 600, 720),))
    assert next_change(hours, at(MON, "11:00")) == at(MON, "12:00")
    never = Hours("never", ())
    assert not is_open(never, at(MON, "11:00")) and next_change(never, at(MON, "11:00")) is None


@pytest.mark.parametrize("bad", [(7, 0, 60), (-1, 0, 60), (MON, 1440, 1500), (MON, 600, 600), (MON, 600, 500), (MON, 0, 1441)])
def test_a_bad_opening_built_in_code_is_refused(bad):
    with pytest.raises(ValueError):
        Opening(*bad)


# ----------------------------------------------------------------------------- the property


def absolute_openings(hours: Hours) -> list[tuple[dt.datetime, dt.datetime]]:
    """The openings as datetime intervals over weeks -1 .. 2 of ``at``: no week arithmetic of the
    module's (last week's Sunday may run into week 0's Monday)."""
    out = []
    for o in hours.openings:
        for week in (-1, 0, 1, 2):
            day = at(o.day, week=week) if week >= 0 else at(o.day) - dt.timedelta(days=7)
            out.append((day + dt.timedelta(minutes=o.start), day + dt.timedelta(minutes=o.end)))
    return out


def oracle_is_open(spans: list[tuple[dt.datetime, dt.datetime]], when: dt.datetime) -> bool:
    return any(start <= when < end for start, end in spans)


DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def random_schedule(rng: random.Random) -> str:
    """1-4 clauses of 1-3 ranges on quarter hours, some past midnight, now and then open 24/7."""
    if rng.random() < 0.05:
        return "mon-thu 0-24, fri-sun 0-24, sat 10-12"
    clauses = []
    for _ in range(rng.randint(1, 4)):
        first, span = rng.randrange(7), rng.randrange(7)
        days = rng.choice([DAYS[first], f"{DAYS[first]}-{DAYS[(first + span) % 7]}" if span else DAYS[first], "daily", ""])
        ranges = []
        for _ in range(rng.randint(1, 3)):
            start = rng.randrange(0, 1440, 15)
            end = rng.randrange(0, 1441, 15)
            if end % 1440 == start:
                end = (start + 60) % 1440
            ranges.append(f"{start // 60:02d}:{start % 60:02d}-{end // 60:02d}:{end % 60:02d}")
        clauses.append(f"{days} {' '.join(ranges)}".strip())
    return ", ".join(clauses)


def test_is_open_is_constant_until_next_change_and_flips_there():
    rng = random.Random(20240101)
    checked = 0
    for _ in range(150):
        hours = parse_hours(random_schedule(rng))
        spans = absolute_openings(hours)
        # Every opening's start and end: the only moments at which is_open may flip.
        edges = sorted({t for span in spans for t in span})
        for _ in range(10):
            # Any instant of two weeks, to the microsecond; every fourth one on a minute edge.
            when = at(0) + dt.timedelta(microseconds=rng.randrange(14 * 86400 * 10**6))
            if rng.random() < 0.25:
                when = when.replace(second=0, microsecond=0)
            state = is_open(hours, when)
            assert state == oracle_is_open(spans, when), (hours.text, when)
            change = next_change(hours, when)
            if change is None:
                week = edges[bisect.bisect_right(edges, when) : bisect.bisect_left(edges, when + dt.timedelta(days=7))]
                assert all(oracle_is_open(spans, t) for t in [when, *week]), hours.text
                continue
            assert when < change <= when + dt.timedelta(days=7), (hours.text, when, change)
            assert seconds_until_change(hours, when) == (change - when).total_seconds()
            # Constant up to the change (at every moment it could flip, and just before the
            # change), and flipped at it.
            between = edges[bisect.bisect_right(edges, when) : bisect.bisect_left(edges, change)]
            for t in [*between, change - dt.timedelta(microseconds=1)]:
                assert oracle_is_open(spans, t) == state, (hours.text, when, t)
            assert is_open(hours, change) != state and oracle_is_open(spans, change) != state, (hours.text, when, change)
            checked += 1
    assert checked > 1000  # the schedules are not all 24/7
