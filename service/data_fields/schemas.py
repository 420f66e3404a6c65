"""Data fields (design §4): what an admin chooses to send to Qualtrics, and in which format.

A data field is `{source, key, placement, format, label?}`; a selection is the ordered list of
them. These models only check the *shape* of a field. Whether a field makes sense (its format
for its source and placement, its key against the catalogue, name collisions) depends on the
catalogue and on the other fields, so `service.data_fields.validation.validate_selection` checks
that and reports every problem at once, each at its JSON pointer.

The preview models (`FieldTarget`, `EncodedField`) describe, per field, where its value goes in
Qualtrics and what was encoded; `service.data_fields.encoding` builds them.
"""

import unicodedata
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

MAX_FIELDS = 100
MAX_KEY_LENGTH = 200  # a catalogue name is at most 200 characters
MAX_LABEL_LENGTH = 100  # Qualtrics: an embedded-data Field / QuestionDescription is ≤ 100


class Source(StrEnum):
    """Where a field's value comes from."""

    INTERACTION_DETAIL = "interaction_detail"
    CUSTOMER_DETAIL = "customer_detail"
    SCORE = "score"
    CATEGORY = "category"
    CATEGORY_GROUP = "category_group"
    CUSTOM_METADATA = "custom_metadata"
    CALL_GROUP_TYPE = "call_group_type"


class Placement(StrEnum):
    """Where the value lands in Qualtrics: a survey question or a declared embedded field."""

    QUESTION = "question"
    EMBEDDED_DATA = "embedded_data"


class Format(StrEnum):
    """How the value is written (design §4 table); the order is the one errors list them in."""

    TEXT = "text"
    BOOLEAN = "boolean"
    NUMERIC = "numeric"
    GROUP = "group"
    MULTI_VALUE_TEXT_SET = "multi_value_text_set"
    VALUE = "value"
    RANGE = "range"


class InteractionDetailKey(StrEnum):
    """The keys of `interaction_detail` fields."""

    DATE = "date"
    TIME = "time"
    STARTED_AT = "started_at"
    ENDED_AT = "ended_at"
    DURATION = "duration"
    TALK_TIME = "talk_time"
    AGENT = "agent"
    AGENT_ID = "agent_id"
    DIRECTION = "direction"
    CHANNEL = "channel"
    CALL_GROUPS = "call_groups"
    LANGUAGE = "language"
    COUNTRY = "country"
    NUMBER_DIALED = "number_dialed"
    INTERACTION_ID = "interaction_id"
    LINK = "link"  # the "Link to Creovai interaction"


class CustomerDetailKey(StrEnum):
    """The keys of `customer_detail` fields."""

    NAME = "name"
    PHONE = "phone"
    CUSTOMER_ID = "customer_id"
    EMAIL = "email"


INTERACTION_DETAIL_KEYS: tuple[str, ...] = tuple(InteractionDetailKey)
CUSTOMER_DETAIL_KEYS: tuple[str, ...] = tuple(CustomerDetailKey)

# Control characters, lone surrogates and line/paragraph separators (the catalogue's rule): a
# label becomes a Qualtrics field name or question text, where they only cause trouble.
_FORBIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _no_control_characters(value: str) -> str:
    if not value.isprintable() and any(
        unicodedata.category(character) in _FORBIDDEN_CATEGORIES for character in value
    ):
        raise ValueError("must not contain control characters or line breaks")
    return value


def _empty_is_none(value: str | None) -> str | None:
    return value or None


Key = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_KEY_LENGTH),
    AfterValidator(_no_control_characters),
]
Label = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=MAX_LABEL_LENGTH),
    AfterValidator(_no_control_characters),
]

DATA_FIELD_EXAMPLES: list[dict[str, Any]] = [
    {"source": "score", "key": "TEI", "placement": "embedded_data", "format": "range"},
    {
        "source": "category",
        "key": "Frustration",
        "placement": "question",
        "format": "boolean",
        "label": "Was the customer frustrated?",
    },
    {
        "source": "category_group",
        "key": "Effort",
        "placement": "embedded_data",
        "format": "multi_value_text_set",
    },
    {"source": "interaction_detail", "key": "link", "placement": "embedded_data", "format": "text"},
]


class DataField(BaseModel):
    """One field of a selection. Frozen: plans and targets built from it can share it."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra={"examples": [*DATA_FIELD_EXAMPLES]}
    )

    source: Source
    key: Key = Field(
        description=(
            "For `interaction_detail` and `customer_detail`, one of their keys; otherwise the "
            "exact catalogue name of the score, category, category group, custom metadata "
            "field or call-group type."
        )
    )
    placement: Placement
    format: Format = Field(description="Which formats a source allows: see design §4.")
    label: Annotated[Label | None, AfterValidator(_empty_is_none)] = Field(
        default=None,
        description=(
            "The question text, or the embedded-data field name, instead of the default. For "
            "embedded data the name is the field's identity in Qualtrics: a new label declares a "
            "new field. Empty means none."
        ),
    )

    def describe(self) -> str:
        """How errors and previews name the field, e.g. `score TEI`."""
        return f"{self.source.value} {self.key}"


class DataFieldSelection(BaseModel):
    """The ordered data fields of an integration (design §4)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"fields": [*DATA_FIELD_EXAMPLES]}]}
    )

    fields: list[DataField] = Field(
        min_length=1,
        max_length=MAX_FIELDS,
        description="In the order the admin gave; the preview and the survey keep it.",
    )


# JSON values a field may put into the Qualtrics `values` object.
EncodedValue = str | int | list[int | str]


class FieldTarget(BaseModel):
    """Where a field's value goes in Qualtrics, as stored in the project's field map."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"kind": "question", "question_id": "QID3", "values_key": "QID3"},
                {
                    "kind": "embedded_data",
                    "embedded_field": "TEI",
                    "variable_type": "Scale",
                    "values_key": "TEI",
                },
            ]
        }
    )

    kind: Placement
    values_key: str = Field(description="The key of the value in the response's `values`.")
    question_id: str | None = Field(default=None, description="For questions.")
    embedded_field: str | None = Field(default=None, description="For embedded data.")
    variable_type: str | None = Field(default=None, description="For embedded data.")


class EncodedField(BaseModel):
    """One field of a preview: its target and the value encoded for one interaction."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "position": 0,
                    "field": DATA_FIELD_EXAMPLES[0],
                    "target_key": "embedded_data:TEI",
                    "target": {
                        "kind": "embedded_data",
                        "embedded_field": "TEI",
                        "variable_type": "Scale",
                        "values_key": "TEI",
                    },
                    "value": "4.6",
                    "display": "4.6",
                    "reason": None,
                }
            ]
        }
    )

    position: int = Field(description="Index of the field in the selection.")
    field: DataField
    target_key: str = Field(description="The field's identity in the project's field map.")
    target: FieldTarget | None = Field(
        description="Null when the field is not in the survey yet (not synced)."
    )
    value: EncodedValue | None = Field(
        description="Exactly what `values` carries for it; null when it is left out."
    )
    display: str | None = Field(
        default=None, description="The value as a person reads it (choice labels, not ids)."
    )
    reason: str | None = Field(default=None, description="Why the value is left out.")
