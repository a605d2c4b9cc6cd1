"""Human durations: parse_duration and format_duration."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flowsight.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("250ms", timedelta(milliseconds=250), id="milliseconds"),
        pytest.param("30s", timedelta(seconds=30), id="seconds"),
        pytest.param("5m", timedelta(minutes=5), id="minutes"),
        pytest.param("24h", timedelta(hours=24), id="hours"),
        pytest.param("14d", timedelta(days=14), id="days"),
        pytest.param("3w", timedelta(weeks=3), id="weeks"),
        pytest.param("1.5h", timedelta(minutes=90), id="a decimal number of hours"),
        pytest.param("0.5s", timedelta(milliseconds=500), id="a decimal number of seconds"),
        pytest.param("0s", timedelta(0), id="zero"),
        pytest.param(" 15 m ", timedelta(minutes=15), id="spaces around and before the unit are allowed"),
        pytest.param(300, timedelta(seconds=300), id="an integer is seconds"),
        pytest.param(0, timedelta(0), id="the integer zero is zero seconds"),
        pytest.param(2.5, timedelta(seconds=2.5), id="a float is seconds"),
    ],
)
def test_parse_duration(value: str | int | float, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("5x", "invalid duration '5x'", id="an unknown unit"),
        pytest.param("5", "invalid duration '5'", id="a number as text needs a unit"),
        pytest.param("m", "invalid duration 'm'", id="a unit without a number"),
        pytest.param("", "invalid duration ''", id="empty text"),
        pytest.param("5M", "invalid duration '5M'", id="units are lower case"),
        pytest.param("5 minutes", "invalid duration '5 minutes'", id="a spelt-out unit"),
        pytest.param("1h30m", "invalid duration '1h30m'", id="compound durations are not supported"),
        pytest.param("1e3s", "invalid duration '1e3s'", id="an exponent"),
        pytest.param(".5s", "invalid duration '.5s'", id="a decimal without a leading digit"),
        pytest.param("-5m", "invalid duration '-5m'", id="negative text is rejected"),
        pytest.param(-1, "a duration cannot be negative", id="a negative integer is rejected"),
        pytest.param(-0.5, "a duration cannot be negative", id="a negative float is rejected"),
        pytest.param(True, "expected a duration", id="true is not one second"),
        pytest.param(False, "expected a duration", id="false is not zero"),
        pytest.param(
            "9999999999d",
            "too large",
            id="a duration too large for a timedelta raises ValueError",
        ),
        pytest.param(
            10**17,
            "too large",
            id="an integer too large for a timedelta raises ValueError",
        ),
    ],
)
def test_parse_duration_rejects(value: str | int | float, message: str) -> None:
    with pytest.raises(ValueError, match=message) as exc:
        parse_duration(value)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        pytest.param(timedelta(weeks=2), "2w", id="whole weeks in weeks"),
        pytest.param(timedelta(days=3), "3d", id="whole days in days"),
        pytest.param(timedelta(hours=72), "3d", id="72 hours in days"),
        pytest.param(timedelta(hours=2), "2h", id="whole hours in hours"),
        pytest.param(timedelta(minutes=90), "90m", id="90 minutes stays in minutes"),
        pytest.param(timedelta(seconds=45), "45s", id="seconds"),
        pytest.param(timedelta(seconds=61), "61s", id="61 seconds stays in seconds"),
        pytest.param(timedelta(milliseconds=1500), "1.5s", id="fractional seconds"),
        pytest.param(timedelta(milliseconds=250), "0.25s", id="under a second"),
        pytest.param(timedelta(0), "0s", id="zero"),
    ],
)
def test_format_duration_uses_the_largest_exact_unit(delta: timedelta, expected: str) -> None:
    assert format_duration(delta) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(text, id=text)
        for text in ("250ms", "1.5s", "30s", "5m", "90m", "1.5h", "24h", "14d", "3w", "0s")
    ],
)
def test_parse_format_parse_round_trip(text: str) -> None:
    delta = parse_duration(text)

    assert parse_duration(format_duration(delta)) == delta


@pytest.mark.parametrize(
    "text", [pytest.param(text, id=text) for text in ("1.5s", "30s", "90m", "2h", "3d", "3w", "0s")]
)
def test_canonical_text_formats_to_itself(text: str) -> None:
    assert format_duration(parse_duration(text)) == text


@pytest.mark.parametrize(
    "delta",
    [
        pytest.param(timedelta(days=1, minutes=1), id="a day and a minute"),
        pytest.param(timedelta(seconds=3600.25), id="an hour and a quarter second"),
        pytest.param(
            timedelta(days=2, milliseconds=500),
            id="two days and half a second keeps its half second",
        ),
        pytest.param(
            timedelta(microseconds=1),
            id="one microsecond formats to parseable text",
        ),
    ],
)
def test_format_parse_round_trip(delta: timedelta) -> None:
    assert parse_duration(format_duration(delta)) == delta
