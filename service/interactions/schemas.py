"""An interaction as the Creovai platform sends it (design §7), validated.

The same model serves the webhook intake, the data-field preview and the trigger dry runs.
Optional facts an interaction lacks are simply absent: encoders leave such fields out of the
Qualtrics response rather than sending empty values.
"""

import math
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# What PostgreSQL cannot store is refused here, as a 422, not by the database as a 500: NUL in
# text and JSONB, NaN and Infinity in JSONB, and times outside its (and Python's) calendar.
# The window is far from both ends, so conversions to UTC and to a trigger's zone never
# overflow, and far beyond any real interaction.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(3000, 1, 1, tzinfo=UTC)


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise PydanticCustomError("nul_character", "Must not contain the NUL character (U+0000).")
    return value


def within_window(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise PydanticCustomError(
            "datetime_out_of_range", "Must be from 1970-01-01 to before 3000-01-01 (UTC)."
        )
    return value


Moment = Annotated[AwareDatetime, AfterValidator(within_window)]
ShortText = Annotated[str, StringConstraints(max_length=500), AfterValidator(no_nul)]
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(no_nul),
]
MetadataValue = str | int | float | bool | None

MAX_LIST_ITEMS = 1000


class Channel(StrEnum):
    CALL = "call"
    CHAT = "chat"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"
    UNKNOWN = "unknown"


class _Part(BaseModel):
    # Unknown keys are ignored: the platform may add facts before we use them.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Agent(_Part):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"id": "agent-7", "name": "Sam Agent", "email": "sam@example.com"}]
        }
    )

    id: ShortText | None = None
    name: ShortText | None = None
    email: ShortText | None = None


class Customer(_Part):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"id": "cust-42", "name": "Alex Customer", "phone": "+447700900123"}]
        }
    )

    id: ShortText | None = None
    name: ShortText | None = None
    phone: ShortText | None = None
    email: ShortText | None = None


class CallGroup(_Part):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"id": "t1", "name": "Billing", "type": "Team"}]}
    )

    id: ShortText | None = None
    name: Name
    type: ShortText | None = Field(default=None, description="e.g. `Team`.")


class OccurredCategory(_Part):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "Frustration", "groups": ["Effort"], "occurrences": 2}]
        }
    )

    name: Name
    groups: list[Name] = Field(default_factory=list, max_length=100)
    occurrences: int = Field(default=1, ge=0)


class ScoreValue(_Part):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "TEI", "value": 4.6}]})

    name: Name
    value: float

    @field_validator("value")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("a score must be a finite number")
        return value


INTERACTION_EXAMPLE: dict[str, Any] = {
    "id": "call-000123",
    "channel": "call",
    "direction": "inbound",
    "started_at": "2026-11-26T09:15:00+01:00",
    "ended_at": "2026-11-26T09:21:30+01:00",
    "duration_seconds": 390,
    "talk_time_seconds": 342,
    "language": "eng",
    "country": "GBR",
    "number_dialed": "+441234567890",
    "agent": {"id": "agent-7", "name": "Sam Agent", "email": "sam@example.com"},
    "customer": {"id": "cust-42", "name": "Alex Customer", "phone": "+447700900123"},
    "call_groups": [{"id": "t1", "name": "Billing", "type": "Team"}],
    "categories": [{"name": "Frustration", "groups": ["Effort"], "occurrences": 2}],
    "scores": [{"name": "TEI", "value": 4.6}, {"name": "AIS", "value": 7.2}],
    "metadata": {"region": "EMEA"},
    "url": "https://app.creovai.com/interactions/call-000123",
}


class Interaction(BaseModel):
    model_config = ConfigDict(
        extra="ignore", frozen=True, json_schema_extra={"examples": [INTERACTION_EXAMPLE]}
    )

    id: Name
    channel: Channel
    direction: Direction = Direction.UNKNOWN
    started_at: Moment = Field(description="With its UTC offset, which dates use.")
    ended_at: Moment | None = None
    duration_seconds: float | None = Field(default=None, ge=0, le=10 * 24 * 3600)
    talk_time_seconds: float | None = Field(default=None, ge=0, le=10 * 24 * 3600)
    language: str | None = Field(default=None, pattern=r"^[a-z]{3}$", description="ISO 639-3.")
    country: str | None = Field(
        default=None, pattern=r"^[A-Z]{3}$", description="ISO 3166-1 alpha-3."
    )
    number_dialed: ShortText | None = None
    agent: Agent | None = None
    customer: Customer | None = None
    call_groups: list[CallGroup] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    categories: list[OccurredCategory] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    scores: list[ScoreValue] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    metadata: dict[Annotated[str, StringConstraints(max_length=200)], MetadataValue] = Field(
        default_factory=dict, max_length=MAX_LIST_ITEMS
    )
    url: Annotated[str, StringConstraints(max_length=2000), AfterValidator(no_nul)] | None = None

    @field_validator("language", mode="before")
    @classmethod
    def _lower_language(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("country", mode="before")
    @classmethod
    def _upper_country(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("metadata")
    @classmethod
    def _storable_metadata(cls, value: dict[str, MetadataValue]) -> dict[str, MetadataValue]:
        for key, item in value.items():
            if "\x00" in key or (isinstance(item, str) and "\x00" in item):
                raise PydanticCustomError(
                    "nul_character",
                    "Metadata {key} must not contain the NUL character (U+0000).",
                    {"key": repr(key)},
                )
            if isinstance(item, float) and not math.isfinite(item):
                raise PydanticCustomError(
                    "finite_number", "Metadata {key} must be a finite number.", {"key": repr(key)}
                )
        return value

    @model_validator(mode="after")
    def _ends_after_start(self) -> "Interaction":
        if self.ended_at is not None and self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self

    # Lookups the encoder and the trigger engine share.
    def score(self, name: str) -> float | None:
        for score in self.scores:
            if score.name == name:
                return score.value
        return None

    @property
    def category_names(self) -> frozenset[str]:
        return frozenset(category.name for category in self.categories if category.occurrences)

    @property
    def started_at_utc(self) -> datetime:
        return self.started_at.astimezone(UTC)
