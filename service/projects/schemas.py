from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints


class ProjectCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Creovai insights"}]}
    )

    name: Annotated[
        str,
        StringConstraints(
            strip_whitespace=True, min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$"
        ),
    ] = Field(description="The survey's name in Qualtrics.")


class ProjectTarget(BaseModel):
    """Where one data field lands in the survey."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "target_key": "score:TEI:range:question",
                    "kind": "question",
                    "question_id": "QID3",
                    "field": None,
                    "variable_type": None,
                },
                {
                    "target_key": "embedded:TEI band",
                    "kind": "embedded_data",
                    "question_id": None,
                    "field": "TEI band",
                    "variable_type": "Nominal",
                },
            ]
        }
    )

    target_key: str
    kind: Literal["question", "embedded_data"]
    question_id: str | None = None
    field: str | None = Field(default=None, description="The embedded-data field name.")
    variable_type: str | None = Field(default=None, description="Embedded data `VariableType`.")

    @classmethod
    def from_map(cls, target_key: str, entry: dict[str, Any]) -> "ProjectTarget":
        return cls(
            target_key=target_key,
            kind=entry["kind"],
            question_id=entry.get("question_id"),
            field=entry.get("field"),
            variable_type=entry.get("variable_type"),
        )


class Project(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "survey_id": "SV_5vaK6JpGtrf2Ldz",
                    "survey_name": "Creovai insights",
                    "published_version_number": 2,
                    "synced_at": "2026-11-26T17:05:00Z",
                    "created_at": "2026-11-26T17:00:00Z",
                    "targets": [
                        {
                            "target_key": "embedded:creovai_interaction_id",
                            "kind": "embedded_data",
                            "field": "creovai_interaction_id",
                            "variable_type": "String",
                        }
                    ],
                }
            ]
        }
    )

    survey_id: str
    survey_name: str
    published_version_number: int | None
    synced_at: datetime | None = Field(description="When the survey last matched the fields.")
    created_at: datetime
    targets: list[ProjectTarget] = Field(
        description="Every question and embedded field the connector fills (never shrinks)."
    )
