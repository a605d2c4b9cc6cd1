"""Silences: the ``/api/silences`` routes over the real engine, and how matchers and ranges match.

Every time is relative to the pinned clock (``T0`` = 2026-11-26T10:00:00Z).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from flowsight.alerts.silences import Matcher, Silence, silenced_by
from flowsight.clock import FixedClock
from tests.conftest import T0

ERP = [{"name": "system", "value": "erp"}]


def body(**fields: Any) -> dict[str, Any]:
    """A valid silence of the ERP for two hours from now; ``fields`` override or add to it."""
    base: dict[str, Any] = {"matchers": ERP, "endsAt": "2026-11-26T12:00:00Z"}
    base.update(fields)
    return base


def create(client: TestClient, **fields: Any) -> dict[str, Any]:
    response = client.post("/api/silences", json=body(**fields))
    assert response.status_code == 200, response.text
    return response.json()


# -- the API -----------------------------------------------------------------------------------


def test_no_silences_at_first(client: TestClient) -> None:
    response = client.get("/api/silences")

    assert (response.status_code, response.json()) == (200, [])


def test_a_posted_silence_is_active_listed_and_readable_by_id(client: TestClient) -> None:
    created = create(
        client,
        matchers=[
            {"name": "system", "value": "erp"},
            {"name": "severity", "value": "page|ticket", "isRegex": True, "isEqual": True},
        ],
        createdBy="sre-oncall",
        comment="ERP maintenance window",
    )
    silence_id = created["silenceID"]
    expected = {
        "id": silence_id,
        "matchers": [
            {"name": "system", "value": "erp", "isRegex": False, "isEqual": True},
            {"name": "severity", "value": "page|ticket", "isRegex": True, "isEqual": True},
        ],
        "startsAt": "2026-11-26T10:00:00Z",
        "endsAt": "2026-11-26T12:00:00Z",
        "createdBy": "sre-oncall",
        "comment": "ERP maintenance window",
        "status": {"state": "active"},
    }

    assert created == {"silenceID": silence_id, **expected}
    assert client.get("/api/silences").json() == [expected]
    one = client.get(f"/api/silences/{silence_id}")
    assert (one.status_code, one.json()) == (200, expected)


def test_times_with_an_offset_are_answered_in_utc(client: TestClient) -> None:
    created = create(client, startsAt="2026-11-26T11:00:00+01:00", endsAt="2026-11-26T13:30:00+01:00")

    assert (created["startsAt"], created["endsAt"]) == ("2026-11-26T10:00:00Z", "2026-11-26T12:30:00Z")
    assert created["status"] == {"state": "active"}


def test_delete_expires_a_silence(client: TestClient, clock: FixedClock) -> None:
    silence_id = create(client)["silenceID"]
    clock.advance(timedelta(minutes=30))

    deleted = client.delete(f"/api/silences/{silence_id}")

    assert deleted.status_code == 200
    assert (deleted.json()["id"], deleted.json()["status"]) == (silence_id, {"state": "expired"})
    again = client.get(f"/api/silences/{silence_id}")
    assert (again.status_code, again.json()["status"]) == (200, {"state": "expired"})
    assert [(s["id"], s["status"]["state"]) for s in client.get("/api/silences").json()] == [
        (silence_id, "expired")
    ]


def test_deleting_twice_keeps_the_silence_expired(client: TestClient, clock: FixedClock) -> None:
    silence_id = create(client)["silenceID"]
    client.delete(f"/api/silences/{silence_id}")
    clock.advance(timedelta(minutes=1))

    second = client.delete(f"/api/silences/{silence_id}")

    assert (second.status_code, second.json()["status"]) == (200, {"state": "expired"})
    assert len(client.get("/api/silences").json()) == 1


def test_expiring_one_silence_leaves_the_others_active(client: TestClient) -> None:
    first = create(client)["silenceID"]
    second = create(client, matchers=[{"name": "system", "value": "wms"}])["silenceID"]

    client.delete(f"/api/silences/{first}")

    states = {s["id"]: s["status"]["state"] for s in client.get("/api/silences").json()}
    assert states == {first: "expired", second: "active"}


def test_unknown_silence_id_is_404(client: TestClient) -> None:
    deleted = client.delete("/api/silences/no-such-silence")
    read = client.get("/api/silences/no-such-silence")

    assert (deleted.status_code, deleted.json()) == (404, {"error": "no silence with id 'no-such-silence'"})
    assert (read.status_code, read.json()) == (404, {"error": "no silence with id 'no-such-silence'"})


def test_a_silence_starting_later_is_pending_until_it_starts(client: TestClient, clock: FixedClock) -> None:
    created = create(client, startsAt="2026-11-26T11:00:00Z")
    silence_id = created["silenceID"]

    assert created["status"] == {"state": "pending"}
    assert client.get(f"/api/silences/{silence_id}").json()["status"] == {"state": "pending"}

    clock.now = datetime(2026, 11, 26, 11, 0, tzinfo=UTC)
    assert client.get(f"/api/silences/{silence_id}").json()["status"] == {"state": "active"}

    clock.now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    assert client.get(f"/api/silences/{silence_id}").json()["status"] == {"state": "expired"}


def test_expiring_a_pending_silence_makes_it_expired(client: TestClient) -> None:
    silence_id = create(client, startsAt="2026-11-26T11:00:00Z")["silenceID"]

    deleted = client.delete(f"/api/silences/{silence_id}")

    assert deleted.json()["status"] == {"state": "expired"}


BAD_BODIES = [
    pytest.param(
        {"endsAt": "2026-11-26T12:00:00Z"},
        "matchers: Field required",
        id="a silence without matchers is rejected",
    ),
    pytest.param(
        body(matchers=[]),
        "matchers: List should have at least 1 item",
        id="an empty matchers list is rejected rather than silencing everything",
    ),
    pytest.param(
        body(matchers=[{"name": "system", "value": "(", "isRegex": True}]),
        "matchers[0].value: ",
        id="a regex matcher that does not compile is rejected",
    ),
    pytest.param(
        body(startsAt="2026-11-26T13:00:00Z", endsAt="2026-11-26T12:00:00Z"),
        "endsAt: must be after startsAt",
        id="endsAt before startsAt is rejected",
    ),
    pytest.param(
        body(startsAt="2026-11-26T12:00:00Z", endsAt="2026-11-26T12:00:00Z"),
        "endsAt: must be after startsAt",
        id="endsAt equal to startsAt is an empty range",
    ),
    pytest.param(
        body(endsAt="2026-11-26T09:00:00Z"),
        "endsAt: must be in the future",
        id="endsAt in the past without startsAt is rejected as past",
    ),
    pytest.param(
        body(startsAt="2026-11-26T08:00:00Z", endsAt="2026-11-26T09:00:00Z"),
        "endsAt: must be in the future",
        id="a range wholly in the past is rejected",
    ),
    pytest.param(
        body(endsAt="tomorrow"),
        "endsAt: Input should be a valid datetime",
        id="endsAt that is not a time is rejected",
    ),
    pytest.param(
        body(silencedBy="me"),
        "silencedBy: Extra inputs are not permitted",
        id="an unknown field is rejected",
    ),
    pytest.param(
        body(matchers=[{"name": "system", "value": "erp", "regex": True}]),
        "matchers[0].regex: Extra inputs are not permitted",
        id="an unknown matcher field is rejected at its index",
    ),
    pytest.param(
        body(matchers=[{"name": "", "value": "erp"}]),
        "matchers[0].name: String should have at least 1 character",
        id="a matcher without a label name is rejected",
    ),
    pytest.param(
        [body()],
        "body: Input should be a valid dictionary",
        id="a JSON array is not a silence",
    ),
]


@pytest.mark.parametrize(("payload", "error"), BAD_BODIES)
def test_bad_silence_is_400_naming_the_field(client: TestClient, payload: Any, error: str) -> None:
    response = client.post("/api/silences", json=payload)

    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(error), response.json()
    assert client.get("/api/silences").json() == []


def test_invalid_regex_error_says_why(client: TestClient) -> None:
    response = client.post(
        "/api/silences", json=body(matchers=[{"name": "system", "value": "(", "isRegex": True}])
    )

    assert response.status_code == 400
    assert "not a valid regular expression: missing ), unterminated subpattern" in response.json()["error"]


def test_body_that_is_not_json_is_400(client: TestClient) -> None:
    response = client.post(
        "/api/silences", content=b"{matchers: [", headers={"content-type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json()["error"].startswith("body: not valid JSON: ")
    assert client.get("/api/silences").json() == []


# -- matching ----------------------------------------------------------------------------------

LABELS = {"alertname": "StuckOrders", "system": "erp", "severity": "page"}


@pytest.mark.parametrize(
    ("matcher", "labels", "expected"),
    [
        pytest.param(Matcher("system", "erp"), LABELS, True, id="equality matches the same value"),
        pytest.param(Matcher("system", "wms"), LABELS, False, id="equality does not match another value"),
        pytest.param(Matcher("system", "er"), LABELS, False, id="equality does not match a prefix"),
        pytest.param(
            Matcher("system", "erp", is_equal=False), LABELS, False, id="negated equality excludes the value"
        ),
        pytest.param(
            Matcher("system", "wms", is_equal=False), LABELS, True, id="negated equality matches other values"
        ),
        pytest.param(Matcher("system", "er.", is_regex=True), LABELS, True, id="a regex matches erp"),
        pytest.param(
            Matcher("system", "er.", is_regex=True),
            {"system": "erpx"},
            False,
            id="a regex must match the whole value",
        ),
        pytest.param(
            Matcher("system", "rp", is_regex=True), LABELS, False, id="a regex is anchored at the start"
        ),
        pytest.param(
            Matcher("system", "wms|erp", is_regex=True),
            LABELS,
            True,
            id="an alternation matches as a whole value",
        ),
        pytest.param(
            Matcher("system", "wms|er", is_regex=True),
            LABELS,
            False,
            id="each alternative is anchored at both ends",
        ),
        pytest.param(
            Matcher("system", "er.", is_regex=True, is_equal=False),
            LABELS,
            False,
            id="a negated regex excludes what it matches",
        ),
        pytest.param(
            Matcher("system", "wms.*", is_regex=True, is_equal=False),
            LABELS,
            True,
            id="a negated regex matches what it does not",
        ),
        pytest.param(Matcher("team", ""), LABELS, True, id="a missing label equals the empty string"),
        pytest.param(Matcher("team", "erp"), LABELS, False, id="a missing label does not equal a value"),
        pytest.param(
            Matcher("team", "erp", is_equal=False),
            LABELS,
            True,
            id="a missing label is not equal to a value",
        ),
        pytest.param(
            Matcher("team", ".*", is_regex=True), LABELS, True, id="a missing label matches a regex of .*"
        ),
        pytest.param(
            Matcher("team", ".+", is_regex=True), LABELS, False, id="a missing label does not match .+"
        ),
        pytest.param(
            Matcher("team", "", is_equal=False), LABELS, False, id="a missing label is not unequal to empty"
        ),
    ],
)
def test_matcher(matcher: Matcher, labels: dict[str, str], expected: bool) -> None:
    assert matcher.matches(labels) is expected


def silence(*matchers: Matcher, **fields: Any) -> Silence:
    base: dict[str, Any] = {
        "id": "s1",
        "matchers": matchers,
        "starts_at": T0,
        "ends_at": T0 + timedelta(hours=2),
        "created_by": "",
        "comment": "",
        "created_at": T0,
    }
    base.update(fields)
    return Silence(**base)


def test_a_silence_matches_only_when_every_matcher_does() -> None:
    both = silence(Matcher("system", "erp"), Matcher("severity", "page"))

    assert both.matches(LABELS) is True
    assert both.matches({**LABELS, "severity": "ticket"}) is False
    assert both.matches({"severity": "page"}) is False


@pytest.mark.parametrize(
    ("at", "expected", "status"),
    [
        pytest.param(T0 - timedelta(seconds=1), False, "pending", id="before startsAt it is pending"),
        pytest.param(T0, True, "active", id="startsAt itself is inside the range"),
        pytest.param(T0 + timedelta(hours=1), True, "active", id="inside the range it is active"),
        pytest.param(
            T0 + timedelta(hours=2) - timedelta(milliseconds=1),
            True,
            "active",
            id="just before endsAt it is active",
        ),
        pytest.param(T0 + timedelta(hours=2), False, "expired", id="endsAt itself is outside the range"),
    ],
)
def test_silence_in_force_from_starts_at_up_to_ends_at(at: datetime, expected: bool, status: str) -> None:
    s = silence(Matcher("system", "erp"))

    assert (s.in_force(at), s.status(at)) == (expected, status)


def test_an_expired_silence_stops_at_its_expiry() -> None:
    s = silence(Matcher("system", "erp"), expired_at=T0 + timedelta(minutes=30))

    assert [s.in_force(T0 + timedelta(minutes=n)) for n in (0, 29, 30, 60)] == [True, True, False, False]
    assert s.status(T0 + timedelta(minutes=30)) == "expired"


def test_a_pending_silence_expired_before_it_starts_never_is_in_force() -> None:
    s = silence(Matcher("system", "erp"), starts_at=T0 + timedelta(hours=1), expired_at=T0)

    assert [s.in_force(T0 + timedelta(minutes=n)) for n in (0, 60, 90)] == [False, False, False]
    assert s.status(T0) == "expired"


def test_silenced_by_names_the_matching_silences_in_force() -> None:
    silences = [
        silence(Matcher("system", "erp"), id="erp"),
        silence(Matcher("system", "wms"), id="wms"),
        silence(Matcher("system", "e.*", is_regex=True), id="later", starts_at=T0 + timedelta(hours=1)),
        silence(Matcher("severity", "page"), id="pages"),
    ]

    assert silenced_by(silences, LABELS, T0) == ("erp", "pages")
    assert silenced_by(silences, LABELS, T0 + timedelta(hours=1)) == ("erp", "later", "pages")
