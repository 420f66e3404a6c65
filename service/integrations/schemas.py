import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from service.integrations.readiness import Step
from service.models import IntegrationHealth

IntegrationName = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$"
    ),
    Field(description="A name unique within the organization.", examples=["NPS follow-up"]),
]

_INTEGRATION_EXAMPLE: dict[str, JsonValue] = {
    "id": "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b",
    "name": "NPS follow-up",
    "enabled": False,
    "health": "ok",
    "health_reason": None,
    "created_at": "2026-11-26T17:00:00Z",
    "updated_at": "2026-11-26T17:05:00Z",
}


class IntegrationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "NPS follow-up"}]}
    )

    name: IntegrationName


class IntegrationUpdate(BaseModel):
    """Fields to change; omitted fields stay as they are."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "NPS follow-up (EMEA)"}]}
    )

    name: IntegrationName | None = None


class Integration(BaseModel):
    model_config = ConfigDict(
        from_attributes=True, json_schema_extra={"examples": [_INTEGRATION_EXAMPLE]}
    )

    id: uuid.UUID
    name: str
    enabled: bool = Field(description="Whether matching interactions are being delivered.")
    health: IntegrationHealth = Field(
        description="`invalid` when Qualtrics rejected the credentials or the survey is gone."
    )
    health_reason: str | None = Field(description="Why the integration is invalid.")
    created_at: datetime
    updated_at: datetime


class StepStatus(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "step": "triggers",
                    "complete": False,
                    "reason": "No enabled trigger: with none, nothing is sent.",
                }
            ]
        }
    )

    step: Step
    complete: bool
    reason: str | None = Field(description="Why the step is not complete.")


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "ready": False,
                    "enabled": False,
                    "health": "ok",
                    "health_reason": None,
                    "steps": [
                        {"step": "credentials", "complete": True, "reason": None},
                        {"step": "project", "complete": True, "reason": None},
                        {"step": "data_fields", "complete": True, "reason": None},
                        {
                            "step": "triggers",
                            "complete": False,
                            "reason": "No enabled trigger: with none, nothing is sent.",
                        },
                    ],
                }
            ]
        }
    )

    ready: bool = Field(description="All four steps are complete: the integration can be enabled.")
    enabled: bool
    health: IntegrationHealth
    health_reason: str | None
    steps: list[StepStatus]
