"""Silences: label matchers over a time range that keep matching alerts from being notified.

Matchers follow Alertmanager's API v2 (``name``, ``value``, ``isRegex``, ``isEqual``); a regex
matches the whole value. An alert is silenced while a silence is in force
(``starts_at <= now < ends_at``, not expired) and every one of its matchers matches.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from flowsight.ddl import Schema
from flowsight.store import Store
from flowsight.timefmt import as_utc, iso_utc, to_ms

_MS = pa.timestamp("ms", tz="UTC")


class MatcherSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="Label name.")
    # isRegex comes before value: the value's check reads it.
    isRegex: bool = Field(False, description="Whether value is a regular expression.")
    value: str = Field(max_length=1024, description="Label value, or a regex matching the whole value.")
    isEqual: bool = Field(True, description="False negates the match.")

    @field_validator("value")
    @classmethod
    def _regex_compiles(cls, value: str, info: Any) -> str:
        if info.data.get("isRegex"):
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class SilenceSpec(BaseModel):
    """``POST /api/silences``: what to silence and for how long."""

    model_config = ConfigDict(extra="forbid")

    matchers: list[MatcherSpec] = Field(min_length=1, max_length=32, description="Every one must match.")
    startsAt: datetime | None = Field(None, description="When it starts (RFC 3339); now if unset.")
    endsAt: datetime = Field(description="When it ends (RFC 3339).")
    createdBy: str = Field("", max_length=256, description="Who created it.")
    comment: str = Field("", max_length=4096, description="Why.")


@lru_cache(maxsize=256)
def _pattern(value: str) -> re.Pattern[str]:
    return re.compile(f"(?:{value})")


@dataclass(frozen=True)
class Matcher:
    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        hit = _pattern(self.value).fullmatch(actual) is not None if self.is_regex else actual == self.value
        return hit == self.is_equal

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex, "isEqual": self.is_equal}


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime
    expired_at: datetime | None = None

    def in_force(self, at: datetime) -> bool:
        end = min(self.ends_at, self.expired_at) if self.expired_at else self.ends_at
        return self.starts_at <= at < end

    def status(self, at: datetime) -> str:
        if self.in_force(at):
            return "active"
        return "pending" if at < self.starts_at and not self.expired_at else "expired"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def as_json(self, at: datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [m.as_json() for m in self.matchers],
            "startsAt": iso_utc(self.starts_at),
            "endsAt": iso_utc(self.ends_at),
            "createdBy": self.created_by,
            "comment": self.comment,
            "status": {"state": self.status(at)},
        }


def silenced_by(silences: Sequence[Silence], labels: Mapping[str, str], at: datetime) -> tuple[str, ...]:
    """IDs of the silences in force at ``at`` that match ``labels``."""
    return tuple(s.id for s in silences if s.in_force(at) and s.matches(labels))


class SilenceStore:
    def __init__(self, store: Store, schema: Schema):
        self.store = store
        self.schema = schema

    def create(self, spec: SilenceSpec, now: datetime) -> Silence:
        """Store a new silence. Raises ValueError naming the field when the range is empty."""
        starts = as_utc(spec.startsAt) if spec.startsAt else now
        ends = as_utc(spec.endsAt)
        if ends <= now:
            raise ValueError("endsAt: must be in the future")
        if ends <= starts:
            raise ValueError("endsAt: must be after startsAt")
        silence = Silence(
            id=str(uuid.uuid4()),
            matchers=tuple(Matcher(m.name, m.value, m.isRegex, m.isEqual) for m in spec.matchers),
            starts_at=starts,
            ends_at=ends,
            created_by=spec.createdBy,
            comment=spec.comment,
            created_at=now,
        )
        self._write(silence)
        return silence

    def expire(self, silence_id: str, now: datetime) -> Silence | None:
        """Expire a silence now (``DELETE``); None when there is no such silence."""
        current = self.get(silence_id)
        if current is None:
            return None
        if current.expired_at is None:
            current = Silence(**{**current.__dict__, "expired_at": now})
            self._write(current)
        return current

    def get(self, silence_id: str) -> Silence | None:
        found = [s for s in self._read("WHERE id = {id:String}", {"id": silence_id})]
        return found[0] if found else None

    def all(self) -> list[Silence]:
        return self._read("", {})

    def in_force(self, at: datetime) -> list[Silence]:
        return [
            s
            for s in self._read(
                "WHERE starts_at <= {at:DateTime64(3, 'UTC')} AND ends_at > {at:DateTime64(3, 'UTC')} "
                "AND (expired_at IS NULL OR expired_at > {at:DateTime64(3, 'UTC')})",
                {"at": as_utc(at).replace(tzinfo=None)},
            )
        ]

    def _read(self, where: str, params: dict[str, Any]) -> list[Silence]:
        rows = self.store.dicts(
            f"SELECT * FROM {self.schema.table('silences')} FINAL {where} ORDER BY created_at, id", params
        )
        return [
            Silence(
                id=r["id"],
                matchers=tuple(
                    Matcher(m["name"], m["value"], bool(m["isRegex"]), bool(m["isEqual"]))
                    for m in orjson.loads(r["matchers"])
                ),
                starts_at=as_utc(r["starts_at"]),
                ends_at=as_utc(r["ends_at"]),
                created_by=r["created_by"],
                comment=r["comment"],
                created_at=as_utc(r["created_at"]),
                expired_at=as_utc(r["expired_at"]) if r["expired_at"] else None,
            )
            for r in rows
        ]

    def _write(self, s: Silence) -> None:
        table = pa.table(
            {
                "id": [s.id],
                "matchers": [orjson.dumps([m.as_json() for m in s.matchers]).decode()],
                "starts_at": pa.array([to_ms(s.starts_at)], _MS),
                "ends_at": pa.array([to_ms(s.ends_at)], _MS),
                "created_by": [s.created_by],
                "comment": [s.comment],
                "created_at": pa.array([to_ms(s.created_at)], _MS),
                "expired_at": pa.array([to_ms(s.expired_at) if s.expired_at else None], _MS),
                "version": pa.array([time.time_ns()], pa.uint64()),
            }
        )
        self.store.insert_arrow(self.schema.table("silences"), table)
