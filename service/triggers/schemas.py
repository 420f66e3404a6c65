"""Trigger criteria (design §5) and the trigger API's bodies.

Structural rules live here, so a bad body is answered with every mistake at once, each at its
location (`/body/criteria/duration_seconds`, `/body/criteria/days_of_week/2`, ...):

- every criterion is optional and an empty list means "no constraint"; unknown keys are refused;
- `{min, max}` ranges are inclusive, either bound may be omitted, and `min > max` is refused;
- `date_from` after `date_to`, an unknown IANA `timezone`, days outside 1-7, and a
  `time_of_day` whose `from` equals its `to` (empty or whole-day: ambiguous) are refused;
- list sizes are bounded (`MAX_*` below).

Whether category, category-group, score and metadata names exist is a question for the
organization's catalogue, answered by `service.triggers.criteria` once this shape is valid.
"""

import math
import re
import uuid
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Any, Self
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from service.catalog.schemas import Name
from service.interactions.schemas import Channel, Direction, no_nul

MAX_TRIGGERS_PER_INTEGRATION = 200
MAX_CATEGORY_NAMES = 500
MAX_VALUES = 1000
MAX_COUNTRIES = 300
MAX_LANGUAGES = 1000
MAX_SCORES = 100
MAX_METADATA_FIELDS = 100
MAX_TIMEZONE_LENGTH = 64
MAX_SECONDS = 10 * 24 * 3600  # the longest interaction the intake accepts
SCORE_BOUND = 1e12  # as in the catalogue

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    # Walking the zone database is slow; it does not change while the process runs.
    return frozenset(available_timezones())


def _date_text(value: Any) -> Any:
    # Dates only as `YYYY-MM-DD`: no Unix timestamps, no datetimes that happen to be midnight.
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE.match(value):
        raise PydanticCustomError("date_format", "Must be a date as YYYY-MM-DD.")
    return value


def metadata_text(value: Any) -> str | None:
    """The text a metadata value is compared as (None: the value is absent).

    Strings are compared exactly (case and whitespace count); booleans as `true` / `false`;
    whole numbers without a fraction (`5`, `5.0` → `5`); other numbers in their shortest form
    (`4.25`).
    """
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return str(int(value))
        return repr(value)
    return str(value)


def _metadata_criterion_value(value: Any) -> Any:
    if isinstance(value, bool | int) or (isinstance(value, float) and math.isfinite(value)):
        return metadata_text(value)
    return value


Identifier = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(no_nul),
]
CountryCode = Annotated[
    str,
    # Letters in either case are accepted and stored in upper case (as the intake does).
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{3}$"),
    AfterValidator(str.upper),
    Field(description="ISO 3166-1 alpha-3, e.g. `GBR`; stored in upper case.", examples=["GBR"]),
]
LanguageCode = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z]{3}$"),
    AfterValidator(str.lower),
    Field(description="ISO 639-3, e.g. `eng`; stored in lower case.", examples=["eng"]),
]
IsoWeekday = Annotated[int, Field(strict=True, ge=1, le=7)]
TimeText = Annotated[
    str,
    StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?$"),
    Field(description="`HH:MM` or `HH:MM:SS`, 24-hour clock.", examples=["09:00"]),
]
CriterionDate = Annotated[date, BeforeValidator(_date_text)]
Seconds = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=MAX_SECONDS)]
ScoreNumber = Annotated[
    float, Field(strict=True, allow_inf_nan=False, ge=-SCORE_BOUND, le=SCORE_BOUND)
]
MetadataCriterionValue = Annotated[
    str,
    BeforeValidator(_metadata_criterion_value),
    StringConstraints(max_length=500),
    AfterValidator(no_nul),
    Field(description="Compared as text; numbers and booleans are accepted and stored as text."),
]
MetadataValues = Annotated[list[MetadataCriterionValue], Field(max_length=MAX_VALUES)]
Timezone = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TIMEZONE_LENGTH),
    Field(description="An IANA time zone name.", examples=["Europe/Berlin"]),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _inverted(lower: float | None, upper: float | None) -> None:
    if lower is not None and upper is not None and lower > upper:
        raise PydanticCustomError(
            "range_inverted",
            "min ({min}) must not be greater than max ({max}).",
            {"min": lower, "max": upper},
        )


class SecondsRange(_Model):
    """Inclusive bounds in seconds; either may be omitted."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"min": 60, "max": 1800}]})

    min: Seconds | None = None
    max: Seconds | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        _inverted(self.min, self.max)
        return self


class ScoreBounds(_Model):
    """Inclusive bounds of a score; either may be omitted. `{}` asks only that the score exists."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"min": 0, "max": 3.3}]})

    min: ScoreNumber | None = None
    max: ScoreNumber | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        _inverted(self.min, self.max)
        return self


class TimeOfDay(_Model):
    """A daily window: `from` inclusive, `to` exclusive; `from` after `to` wraps midnight."""

    model_config = ConfigDict(
        serialize_by_alias=True,
        json_schema_extra={"examples": [{"from": "09:00", "to": "17:30"}]},
    )

    from_: TimeText = Field(alias="from")
    to: TimeText

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if time_of_day_seconds(self.from_) == time_of_day_seconds(self.to):
            raise PydanticCustomError(
                "time_window_empty",
                "from and to must differ (omit time_of_day to allow the whole day).",
            )
        return self


def time_of_day_seconds(text: str) -> int:
    """Seconds after midnight of a validated `HH:MM[:SS]`."""
    parts = [int(part) for part in text.split(":")]
    return parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) == 3 else 0)


class CategoryFilter(_Model):
    """Names that must occur: `any` (at least one), `all` (every one), `none` (not one)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"any": ["Frustration", "Cancellation"], "all": [], "none": ["Praise"]}]
        }
    )

    any: list[Name] = Field(default_factory=list, max_length=MAX_CATEGORY_NAMES)
    all: list[Name] = Field(default_factory=list, max_length=MAX_CATEGORY_NAMES)
    none: list[Name] = Field(default_factory=list, max_length=MAX_CATEGORY_NAMES)


CRITERIA_EXAMPLE: dict[str, JsonValue] = {
    "channels": ["call"],
    "directions": ["inbound"],
    "days_of_week": [1, 2, 3, 4, 5],
    "time_of_day": {"from": "08:00", "to": "18:00"},
    "timezone": "Europe/London",
    "countries": ["GBR"],
    "categories": {"any": ["Frustration"], "all": [], "none": []},
    "duration_seconds": {"min": 60},
    "scores": {"TEI": {"max": 3.3}},
    "sample_rate": 0.25,
}


class Criteria(_Model):
    """Which interactions a trigger selects: AND across criteria, OR within a list.

    Every criterion is optional; an empty list means no constraint; an empty object matches
    every interaction. A constrained fact the interaction lacks (no agent, no such score or
    metadata field) does not match.
    """

    model_config = ConfigDict(json_schema_extra={"examples": [CRITERIA_EXAMPLE, {}]})

    channels: list[Channel] | None = Field(default=None, max_length=len(Channel))
    directions: list[Direction] | None = Field(default=None, max_length=len(Direction))
    date_from: CriterionDate | None = Field(
        default=None, description="First day (in `timezone`) the interaction may start on."
    )
    date_to: CriterionDate | None = Field(
        default=None, description="Last day (in `timezone`, inclusive) it may start on."
    )
    days_of_week: list[IsoWeekday] | None = Field(
        default=None, max_length=7, description="ISO weekdays in `timezone`: 1 = Monday."
    )
    time_of_day: TimeOfDay | None = Field(
        default=None, description="Start time window in `timezone`."
    )
    timezone: Timezone = Field(
        default="UTC",
        description="IANA zone for `date_from`, `date_to`, `days_of_week` and `time_of_day`.",
    )
    countries: list[CountryCode] | None = Field(default=None, max_length=MAX_COUNTRIES)
    languages: list[LanguageCode] | None = Field(default=None, max_length=MAX_LANGUAGES)
    categories: CategoryFilter | None = Field(
        default=None, description="Over the categories that occurred (catalogue names)."
    )
    category_groups: CategoryFilter | None = Field(
        default=None, description="Over the groups of the categories that occurred."
    )
    teams: list[Name] | None = Field(
        default=None, max_length=MAX_VALUES, description="Call-group names, exactly."
    )
    agents: list[Identifier] | None = Field(
        default=None, max_length=MAX_VALUES, description="Agent ids."
    )
    customers: list[Identifier] | None = Field(
        default=None, max_length=MAX_VALUES, description="Customer ids."
    )
    numbers_dialed: list[Identifier] | None = Field(
        default=None, max_length=MAX_VALUES, description="Dialed numbers, matched exactly."
    )
    talk_time_seconds: SecondsRange | None = None
    duration_seconds: SecondsRange | None = None
    scores: dict[Name, ScoreBounds] | None = Field(
        default=None,
        max_length=MAX_SCORES,
        description="Score name → inclusive bounds; an interaction without the score fails.",
    )
    metadata: dict[Name, MetadataValues] | None = Field(
        default=None,
        max_length=MAX_METADATA_FIELDS,
        description=(
            "Custom metadata field → accepted values (compared as text, exactly); "
            "an interaction without the field fails."
        ),
    )
    sample_rate: float | None = Field(
        default=None,
        strict=True,
        ge=0,
        le=1,
        description=(
            "Keep this fraction of the interactions that match everything else, "
            "deterministically per interaction id."
        ),
    )

    @field_validator("date_to")
    @classmethod
    def _not_before_from(cls, value: date | None, info: ValidationInfo) -> date | None:
        # date_from is validated first (field order), so a valid one is in info.data.
        date_from = info.data.get("date_from")
        if value is not None and date_from is not None and date_from > value:
            raise PydanticCustomError(
                "date_range_inverted",
                "date_to ({date_to}) must not be before date_from ({date_from}).",
                {"date_to": value.isoformat(), "date_from": date_from.isoformat()},
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value not in _timezones():
            raise PydanticCustomError(
                "unknown_timezone",
                "{zone} is not an IANA time zone name (e.g. Europe/Berlin, America/New_York).",
                {"zone": value},
            )
        return value

    def stored(self) -> dict[str, Any]:
        """The JSON document kept in `triggers.criteria` (absent criteria left out)."""
        return self.model_dump(mode="json", exclude_none=True)


TriggerName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$"
    ),
    Field(description="A name unique within the integration.", examples=["Frustrated callers"]),
]

_TRIGGER_EXAMPLE: dict[str, JsonValue] = {
    "id": "0b7e9f1c-2d3a-4b5c-8d6e-7f8091a2b3c4",
    "integration_id": "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b",
    "name": "Frustrated callers",
    "enabled": True,
    "position": 0,
    "criteria": {
        "channels": ["call"],
        "categories": {"any": ["Frustration"], "all": [], "none": []},
        "timezone": "UTC",
        "sample_rate": 0.5,
    },
    "version": 1,
    "created_at": "2026-11-26T17:00:00Z",
    "updated_at": "2026-11-26T17:00:00Z",
}


class TriggerCreate(_Model):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Frustrated callers",
                    "criteria": {
                        "channels": ["call"],
                        "categories": {"any": ["Frustration"]},
                        "sample_rate": 0.5,
                    },
                }
            ]
        }
    )

    name: TriggerName
    enabled: bool = Field(default=True, description="Disabled triggers never match.")
    criteria: Criteria = Field(
        default_factory=Criteria, description="Omitted or `{}`: every interaction matches."
    )


class TriggerUpdate(_Model):
    """Fields to change; omitted fields stay as they are (`null` is refused)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"position": 0}, {"criteria": {"channels": ["chat"]}}]}
    )

    name: TriggerName | None = None
    enabled: bool | None = None
    position: int | None = Field(
        default=None,
        strict=True,
        ge=0,
        description="New place in the evaluation order (0 first); the others move to make room.",
    )
    criteria: Criteria | None = Field(default=None, description="Replaces the criteria whole.")

    @field_validator("name", "enabled", "position", "criteria")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Runs only for values that were sent: defaults are not validated.
        if value is None:
            raise PydanticCustomError(
                "null_not_allowed", "Must not be null; omit the field to leave it unchanged."
            )
        return value


class Trigger(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_TRIGGER_EXAMPLE]}
    )

    id: uuid.UUID
    integration_id: uuid.UUID
    name: str
    enabled: bool
    position: int = Field(description="Evaluation order, 0 first; the first match is recorded.")
    criteria: Criteria
    version: int = Field(description='Bumped on every change; the ETag is `"trigger-{version}"`.')
    created_at: datetime
    updated_at: datetime


class TriggerList(BaseModel):
    """All of an integration's triggers (at most 200), in evaluation order."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"items": [_TRIGGER_EXAMPLE]}]})

    items: list[Trigger]
