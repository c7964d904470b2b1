"""Pure unit tests of series calendars and time zones (batchsvc.core.calendars), and of how
core.typed turns positional and explicit series into rows with them: no database, no app."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from itertools import islice
from zoneinfo import ZoneInfo

import pytest

from batchsvc.core.calendars import CalendarError, calendar_named, day_start, zone_named
from batchsvc.core.times import localize, parse_instant
from batchsvc.core.typed import InvalidData, extract_data

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*parts) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def times(calendar: str, start: datetime, n: int, zone=UTC) -> list[datetime]:
    return list(islice(calendar_named(calendar).times_from(start, zone), n))


def iso(moments) -> list[str]:
    return [m.isoformat() for m in moments]


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, canonical, step",
    [
        (None, "SPARSE", None),
        ("SPARSE", "SPARSE", None),
        ("sparse", "SPARSE", None),
        ("DAILY", "DAILY", None),
        ("daily", "DAILY", None),
        ("Business", "BUSINESS", None),
        ("P1D", "P1D", None),
        ("PT5M", "PT5M", timedelta(minutes=5)),
        ("pt30m", "PT30M", timedelta(minutes=30)),
        ("PT1H", "PT1H", timedelta(hours=1)),
        ("PT15M", "PT15M", timedelta(minutes=15)),
        ("PT1H30M", "PT1H30M", timedelta(minutes=90)),
        ("PT24H", "PT24H", timedelta(days=1)),
        ("PT30S", "PT30S", timedelta(seconds=30)),
    ],
)
def test_calendar_names(name, canonical, step):
    calendar = calendar_named(name)
    assert calendar.name == canonical
    assert calendar.step == step
    assert calendar.regular == (canonical != "SPARSE")


@pytest.mark.parametrize(
    "name, message",
    [
        ("WEEKLY", "unknown calendar 'WEEKLY'"),
        ("hourly", "unknown calendar 'hourly'"),
        ("", "unknown calendar ''"),
        ("P", "unknown calendar 'P'"),
        ("PT", "unknown calendar 'PT'"),
        ("P1M", "unknown calendar 'P1M'"),
        ("P1W", "unknown calendar 'P1W'"),
        ("PT-5M", "unknown calendar 'PT-5M'"),
        ("P2D", "calendar P2D is not supported: day durations are P1D only"),
        ("P1DT1H", "calendar P1DT1H is not supported: day durations are P1D only"),
        ("PT7M", "calendar PT7M is not supported: a time duration must divide a day"),
        ("PT0M", "calendar PT0M is not supported: a time duration must divide a day"),
        ("PT25H", "calendar PT25H is not supported: a time duration must divide a day"),
        (5, "calendar must be a string"),
        ({"_type": "VarCalendar"}, "calendar must be a string"),
    ],
)
def test_unknown_or_unsupported_calendars(name, message):
    with pytest.raises(CalendarError) as raised:
        calendar_named(name)
    assert str(raised.value).startswith(message)


def test_zones():
    assert zone_named(None) is UTC
    assert zone_named("Europe/London") == LONDON
    assert zone_named("UTC").utcoffset(datetime(2024, 1, 1)) == timedelta(0)
    for bad, message in [
        ("Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
        ("../../etc/passwd", "unknown time zone '../../etc/passwd'"),
        ("/etc/localtime", "unknown time zone '/etc/localtime'"),
        ("", "timezone must be an IANA time zone name"),
        (3, "timezone must be an IANA time zone name"),
        ("x" * 65, "timezone must be an IANA time zone name"),
    ]:
        with pytest.raises(CalendarError) as raised:
            zone_named(bad)
        assert str(raised.value).startswith(message)


# --- clock times in a zone ------------------------------------------------------------------------


def test_naive_times_read_in_the_zone():
    assert parse_instant("2024-01-15T09:00") == utc(2024, 1, 15, 9)
    assert parse_instant("2024-07-15T09:00", LONDON) == utc(2024, 7, 15, 8)
    assert parse_instant("2024-07-15", NEW_YORK) == utc(2024, 7, 15, 4)
    # an explicit offset keeps its offset whatever the zone
    assert parse_instant("2024-07-15T09:00+02:00", LONDON) == utc(2024, 7, 15, 7)
    # repeated when the clocks go back: the earlier one; skipped when they go forward: moved on by the gap
    # (compared as UTC: an aware time in a repeated hour never equals one of another zone, PEP 495)
    assert localize(datetime(2024, 10, 27, 1, 30), LONDON).astimezone(UTC) == utc(2024, 10, 27, 0, 30)
    skipped = localize(datetime(2024, 3, 31, 1, 30), LONDON)
    assert skipped == utc(2024, 3, 31, 1, 30) and skipped.isoformat() == "2024-03-31T02:30:00+01:00"


def test_day_start():
    assert day_start(date(2024, 4, 1), LONDON) == utc(2024, 3, 31, 23)
    # Santiago skips midnight on 2024-09-08: the day starts at 01:00 -03
    assert day_start(date(2024, 9, 8), ZoneInfo("America/Santiago")).isoformat() == "2024-09-08T01:00:00-03:00"


# --- day calendars -----------------------------------------------------------------------------------


def test_daily_and_p1d():
    for name in ("DAILY", "P1D"):
        assert times(name, utc(2024, 2, 27), 4) == [utc(2024, 2, d) for d in (27, 28, 29)] + [utc(2024, 3, 1)]
        assert times(name, utc(2024, 2, 27, 0, 0, 1), 1) == [utc(2024, 2, 28)]  # start off the calendar
        daily = calendar_named(name)
        assert daily.aligned(utc(2024, 2, 27), UTC)
        assert not daily.aligned(utc(2024, 2, 27, 0, 0, 0, 1), UTC)
        assert not daily.aligned(utc(2024, 2, 27, 12), UTC)


def test_business():
    friday, saturday = utc(2024, 1, 5), utc(2024, 1, 6)
    assert times("BUSINESS", friday, 3) == [friday, utc(2024, 1, 8), utc(2024, 1, 9)]
    assert times("BUSINESS", saturday, 2) == [utc(2024, 1, 8), utc(2024, 1, 9)]
    assert times("BUSINESS", utc(2024, 1, 5, 9), 1) == [utc(2024, 1, 8)]  # Friday 09:00 is after Friday's time
    business = calendar_named("BUSINESS")
    assert [business.aligned(utc(2024, 1, d), UTC) for d in range(1, 8)] == [True] * 5 + [False] * 2


def test_day_calendars_step_in_local_days_across_dst():
    # London's clocks go forward at 01:00 UTC on 2024-03-31: midnight of that day is still GMT, the next is BST
    assert iso(times("DAILY", utc(2024, 3, 30), 3, LONDON)) == [
        "2024-03-30T00:00:00+00:00",
        "2024-03-31T00:00:00+00:00",
        "2024-04-01T00:00:00+01:00",
    ]
    daily = calendar_named("DAILY")
    assert daily.aligned(utc(2024, 3, 31, 23), LONDON)  # = 2024-04-01T00:00 BST
    assert not daily.aligned(utc(2024, 4, 1), LONDON)  # = 01:00 BST
    # back to GMT on 2024-10-27: the 25-hour day
    got = [m.astimezone(UTC) for m in times("DAILY", utc(2024, 10, 26), 3, LONDON)]
    assert [b - a for a, b in zip(got, got[1:], strict=False)] == [timedelta(hours=25), timedelta(hours=24)]
    # Business days in New York, counted on New York dates
    assert iso(times("BUSINESS", parse_instant("2024-03-08", NEW_YORK), 2, NEW_YORK)) == [
        "2024-03-08T00:00:00-05:00",
        "2024-03-11T00:00:00-04:00",
    ]


def test_midnights_dst_skips_or_repeats():
    daily = calendar_named("DAILY")
    # Santiago skips midnight on 2024-09-08: that day's time is 01:00 -03
    santiago = ZoneInfo("America/Santiago")
    assert iso(times("DAILY", utc(2024, 9, 7, 12), 1, santiago)) == ["2024-09-08T01:00:00-03:00"]
    assert daily.aligned(utc(2024, 9, 8, 4), santiago)
    # Havana's clocks go back from 01:00 to 00:00 on 2024-11-03: only the first midnight is the day's time
    havana = ZoneInfo("America/Havana")
    assert daily.aligned(utc(2024, 11, 3, 4), havana)
    assert not daily.aligned(utc(2024, 11, 3, 5), havana)
    assert iso(times("DAILY", utc(2024, 11, 3, 4), 2, havana)) == [
        "2024-11-03T00:00:00-04:00",
        "2024-11-04T00:00:00-05:00",
    ]


def test_a_day_the_zone_skips_is_not_on_the_calendar():
    apia = ZoneInfo("Pacific/Apia")  # 2011-12-30 never happened in Samoa
    assert iso(times("DAILY", parse_instant("2011-12-29", apia), 3, apia)) == [
        "2011-12-29T00:00:00-10:00",
        "2011-12-31T00:00:00+14:00",
        "2012-01-01T00:00:00+14:00",
    ]


# --- sub-day calendars ------------------------------------------------------------------------------


def test_five_minutes_and_hours():
    assert times("PT5M", utc(2024, 1, 6, 23, 50), 4) == [
        utc(2024, 1, 6, 23, 50),
        utc(2024, 1, 6, 23, 55),
        utc(2024, 1, 7, 0, 0),
        utc(2024, 1, 7, 0, 5),
    ]
    assert times("PT5M", utc(2024, 1, 6, 10, 3), 2) == [utc(2024, 1, 6, 10, 5), utc(2024, 1, 6, 10, 10)]
    assert times("PT1H", utc(2024, 1, 6, 22, 30), 3) == [utc(2024, 1, 6, 23), utc(2024, 1, 7, 0), utc(2024, 1, 7, 1)]
    five = calendar_named("PT5M")
    assert five.aligned(utc(2024, 1, 6, 10, 5), UTC)
    assert not five.aligned(utc(2024, 1, 6, 10, 2), UTC)
    assert not five.aligned(utc(2024, 1, 6, 10, 5, 1), UTC)
    assert not five.aligned(utc(2024, 1, 6, 10, 5, 0, 1000), UTC)
    # the grid is local clock time: PT1H in Kolkata (+05:30) falls on UTC half hours
    kolkata = ZoneInfo("Asia/Kolkata")
    hourly = calendar_named("PT1H")
    assert hourly.aligned(utc(2024, 1, 6, 4, 30), kolkata) and not hourly.aligned(utc(2024, 1, 6, 4), kolkata)


def test_sub_day_calendars_step_in_absolute_time_across_dst():
    # spring forward: 00:30 GMT is followed 30 minutes later by 02:00 BST
    assert iso(times("PT30M", parse_instant("2024-03-31T00:30", LONDON), 3, LONDON)) == [
        "2024-03-31T00:30:00+00:00",
        "2024-03-31T02:00:00+01:00",
        "2024-03-31T02:30:00+01:00",
    ]
    # fall back: the repeated hour is on the calendar twice, once per offset
    assert iso(times("PT30M", parse_instant("2024-10-27T00:30", LONDON), 5, LONDON)) == [
        "2024-10-27T00:30:00+01:00",
        "2024-10-27T01:00:00+01:00",
        "2024-10-27T01:30:00+01:00",
        "2024-10-27T01:00:00+00:00",
        "2024-10-27T01:30:00+00:00",
    ]
    # a whole local day of 5-minute times: 276 on the 23-hour day, 300 on the 25-hour one, all 5 minutes apart
    for day, count in ((date(2024, 3, 31), 276), (date(2024, 10, 27), 300), (date(2024, 6, 1), 288)):
        got = times("PT5M", day_start(day, LONDON), 301, LONDON)
        on_day = [m for m in got if m.date() == day]
        assert len(on_day) == count
        assert {b.astimezone(UTC) - a.astimezone(UTC) for a, b in zip(got, got[1:], strict=False)} == {
            timedelta(minutes=5)
        }
        assert all(calendar_named("PT5M").aligned(m, LONDON) for m in got)
    # a step longer than the shift keeps the local grid: the step across the change is an hour longer
    assert iso(times("PT2H", parse_instant("2024-10-27", LONDON), 3, LONDON)) == [
        "2024-10-27T00:00:00+01:00",
        "2024-10-27T02:00:00+00:00",
        "2024-10-27T04:00:00+00:00",
    ]


# --- core.typed: series into rows -------------------------------------------------------------------


def rows(series: dict):
    """(time as stored, value) per row in instant order, and the summary dates, of one series property."""
    _, data = extract_data({"S": {"_type": "VarTimeSeries", **series}})
    points = sorted(data.points.items())
    return [(point["time"], point["value"]) for _, point in points], [day for _, day, _ in data.dates]


def failure(series: dict) -> str:
    with pytest.raises(InvalidData) as raised:
        extract_data({"S": {"_type": "VarTimeSeries", **series}})
    return str(raised.value)


def test_positional_series():
    header, data = extract_data(
        {
            "S": {
                "_type": "VarTimeSeries",
                "start": "2022-11-01",
                "calendar": "BUSINESS",
                "data": [12.5, 12.6, 12.7, 12.8],
            }
        }
    )
    assert header == {"S": {"_type": "VarTimeSeries", "start": "2022-11-01", "calendar": "BUSINESS"}}
    assert data.points == {
        ("S", utc(2022, 11, 1)): {"time": "2022-11-01T00:00:00+00:00", "value": 12.5},
        ("S", utc(2022, 11, 2)): {"time": "2022-11-02T00:00:00+00:00", "value": 12.6},
        ("S", utc(2022, 11, 3)): {"time": "2022-11-03T00:00:00+00:00", "value": 12.7},
        ("S", utc(2022, 11, 4)): {"time": "2022-11-04T00:00:00+00:00", "value": 12.8},
    }
    assert rows({"start": "2024-01-06", "calendar": "BUSINESS", "data": [1, 2]})[0] == [  # a Saturday start
        ("2024-01-08T00:00:00+00:00", 1),
        ("2024-01-09T00:00:00+00:00", 2),
    ]
    assert rows({"start": "2024-01-06T10:03:00Z", "calendar": "PT5M", "data": [1, None, "x"]})[0] == [
        ("2024-01-06T10:05:00+00:00", 1),
        ("2024-01-06T10:10:00+00:00", None),
        ("2024-01-06T10:15:00+00:00", "x"),
    ]


def test_mixed_positional_and_explicit_observations():
    _, data = extract_data(
        {
            "S": {
                "_type": "VarTimeSeries",
                "start": "2024-01-01",
                "calendar": "DAILY",
                "data": [1, {"value": 2, "status": "E"}, {"time": "2024-01-10", "value": 10, "status": "F"}, 4],
            }
        }
    )
    # data[n] without its own time is at the n-th calendar time; an explicit one keeps its time (and its slot)
    assert data.points == {
        ("S", utc(2024, 1, 1)): {"time": "2024-01-01T00:00:00+00:00", "value": 1},
        ("S", utc(2024, 1, 2)): {"time": "2024-01-02T00:00:00+00:00", "value": 2, "status": "E"},
        ("S", utc(2024, 1, 10)): {"time": "2024-01-10", "value": 10, "status": "F"},
        ("S", utc(2024, 1, 4)): {"time": "2024-01-04T00:00:00+00:00", "value": 4},
    }


def test_series_in_a_time_zone():
    points, dates = rows({"timezone": "Europe/London", "calendar": "DAILY", "start": "2024-03-30", "data": [1, 2, 3]})
    assert points == [
        ("2024-03-30T00:00:00+00:00", 1),
        ("2024-03-31T00:00:00+00:00", 2),
        ("2024-04-01T00:00:00+01:00", 3),
    ]
    assert dates == ["2024-03-30", "2024-03-31", "2024-04-01"]
    _, data = extract_data(
        {
            "S": {
                "_type": "VarTimeSeries",
                "timezone": "Europe/London",
                "data": [
                    {"time": "2024-07-01", "value": 1},  # naive: London midnight
                    {"time": "2024-07-01T23:30:00+00:00", "value": 2},  # an offset is kept: 00:30 BST on the 2nd
                ],
            }
        }
    )
    assert data.points == {
        ("S", utc(2024, 6, 30, 23)): {"time": "2024-07-01", "value": 1},
        ("S", utc(2024, 7, 1, 23, 30)): {"time": "2024-07-01T23:30:00+00:00", "value": 2},
    }
    # the summary date is the calendar date in the series' zone (UTC without one)
    assert [day for _, day, _ in data.dates] == ["2024-07-01", "2024-07-02"]
    assert rows({"data": [{"time": "2024-07-01T22:00:00-05:00", "value": 1}]})[1] == ["2024-07-02"]


def test_explicit_times_must_align():
    assert rows({"calendar": "BUSINESS", "data": [{"time": "2024-01-05", "value": 1}]})[0] == [("2024-01-05", 1)]
    assert failure(
        {"calendar": "BUSINESS", "data": [{"time": "2024-01-05", "value": 1}, {"time": "2024-01-06", "value": 2}]}
    ) == ("[9001] 2024-01-06 does not align with calendar BUSINESS (property 'S', observation #1)")
    assert failure({"calendar": "pt5m", "data": [{"time": "2024-01-06T10:02:00Z", "value": 1}]}) == (
        "[9001] 2024-01-06T10:02:00Z does not align with calendar PT5M (property 'S', observation #0)"
    )
    # London midnight is 23:00 UTC in summer: UTC midnight is not on a London DAILY calendar
    assert failure(
        {"calendar": "DAILY", "timezone": "Europe/London", "data": [{"time": "2024-07-01T00:00Z", "value": 1}]}
    ) == ("[9001] 2024-07-01T00:00Z does not align with calendar DAILY (property 'S', observation #0)")
    assert rows(
        {"calendar": "DAILY", "timezone": "Europe/London", "data": [{"time": "2024-06-30T23:00Z", "value": 1}]}
    )[1] == ["2024-07-01"]
    # SPARSE or no calendar: any time
    for calendar in ({}, {"calendar": "SPARSE"}):
        assert rows({**calendar, "data": [{"time": "2024-01-06T10:02:07.5Z", "value": 1}]})[0] == [
            ("2024-01-06T10:02:07.5Z", 1)
        ]


def test_series_failures():
    regular = "a regular calendar (DAILY, BUSINESS or an ISO-8601 duration such as PT5M, PT1H or P1D)"
    assert failure({"start": "2024-01-01", "data": [1]}) == (
        f"property 'S': observation #0 has no time; values without a time need {regular}, this series has no calendar"
    )
    assert failure({"start": "2024-01-01", "calendar": "SPARSE", "data": [1]}) == (
        f"property 'S': observation #0 has no time; values without a time need {regular}, this series has calendar SPARSE"
    )
    assert failure({"calendar": "DAILY", "data": [{"time": "2024-01-01", "value": 0}, 1]}) == (
        "property 'S': observation #1 has no time; values without a time need the series' start"
    )
    assert failure({"calendar": "DAILY", "start": "soon", "data": [1]}) == (
        "property 'S': start 'soon' is not an ISO-8601 date or date-time"
    )
    assert failure({"calendar": "DAILY", "start": 20240101, "data": [1]}) == (
        "property 'S': start must be an ISO-8601 date or date-time string"
    )
    assert failure({"calendar": "MONTHLY", "data": []}).startswith(
        "property 'S': unknown calendar 'MONTHLY' (SPARSE, DAILY"
    )
    assert failure({"timezone": "Europe/Lndon", "data": []}) == "property 'S': unknown time zone 'Europe/Lndon'"
    assert failure({"calendar": "PT1H", "start": "9999-12-31T22:00Z", "data": [1, 2, 3]}) == (
        "property 'S': observation #2 falls outside the years 1 to 9999"
    )
    assert failure({"timezone": "Asia/Tokyo", "data": [{"time": "9999-12-31T23:00:00Z", "value": 1}]}) == (
        "property 'S': observation #0 falls outside the years 1 to 9999"
    )
    # a start that is not needed is metadata: a SPARSE series may carry one
    assert rows({"start": "whenever", "data": [{"time": "2024-01-01", "value": 1}]})[0] == [("2024-01-01", 1)]
