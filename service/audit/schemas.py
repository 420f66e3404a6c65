import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditLogEntry(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "2c7d1e9a-7a0b-4f0e-8a57-0d7c9e3f4b21",
                    "created_at": "2026-11-26T17:02:03Z",
                    "actor": "admin@example.com",
                    "actor_user_id": "0b7e4a52-8f4e-4d7b-9a55-3f2d0c8b1e11",
                    "action": "integration.renamed",
                    "integration_id": "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b",
                    "details": {"from": "NPS", "to": "NPS follow-up"},
                }
            ]
        },
    )

    id: uuid.UUID
    created_at: datetime
    actor: str = Field(description="Email of the user, or `cli` for operator commands.")
    actor_user_id: uuid.UUID | None
    action: str = Field(description="What happened, as `object.verb`.")
    integration_id: uuid.UUID | None
    details: dict[str, Any]
