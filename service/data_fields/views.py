"""What the data-field endpoints answer: the saved selection, and previews."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from service.data_fields.schemas import DATA_FIELD_EXAMPLES, DataField, EncodedField
from service.interactions.schemas import INTERACTION_EXAMPLE, Interaction

_FIELDS: list[JsonValue] = list(DATA_FIELD_EXAMPLES)


class DataFieldsView(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"fields": _FIELDS, "synced_at": "2026-11-26T17:05:00Z"}]}
    )

    fields: list[DataField] = Field(description="The selection, in order.")
    synced_at: datetime | None = Field(description="When the survey last matched it.")


class PreviewRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"interaction": INTERACTION_EXAMPLE},
                {"interaction": INTERACTION_EXAMPLE, "fields": _FIELDS},
            ]
        },
    )

    interaction: Interaction = Field(
        description="A sample interaction, as the webhook would carry it."
    )
    fields: list[DataField] | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="A selection to preview before saving it; omit to preview the saved one.",
    )
    trigger_name: str = Field(default="Preview", min_length=1, max_length=200)


class QualtricsRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "method": "POST",
                    "url": "https://iad1.qualtrics.com/API/v3/surveys/SV_5vaK6JpGtrf2Ldz/responses",
                    "headers": {
                        "Content-Type": "application/json",
                        "Idempotency-Key": "<delivery id>",
                    },
                    "body": {"values": {"startDate": "2026-11-26T08:15:00Z", "finished": 1}},
                }
            ]
        }
    )

    method: str
    url: str
    headers: dict[str, str]
    body: dict[str, Any]


class Preview(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "fields": [EncodedField.model_json_schema()["examples"][0]],
                    "provisional": [],
                    "request": QualtricsRequest.model_json_schema()["examples"][0],
                }
            ]
        }
    )

    fields: list[EncodedField] = Field(description="Each field in order: target and value.")
    provisional: list[str] = Field(
        description="Target keys of questions that do not exist yet: their question ids are "
        "what saving would most likely create."
    )
    request: QualtricsRequest = Field(description="The exact create-response request.")
