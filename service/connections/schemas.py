from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints


class QualtricsConnectionIn(BaseModel):
    """Step 1: the OAuth client created in Qualtrics for this integration."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "client_id": "9f1b2c3d4e5f60718293a4b5c6d7e8f9",
                    "client_secret": "…",
                    "subdomain": "iad1",
                }
            ]
        },
    )

    client_id: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
    ]
    client_secret: SecretStr = Field(
        min_length=1, max_length=500, description="Write-only: stored encrypted, never returned."
    )
    subdomain: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=63)
    ] = Field(
        description="Your Qualtrics data center or brand host label, e.g. `iad1` "
        "(from https://iad1.qualtrics.com)."
    )


class QualtricsConnection(BaseModel):
    """The saved connection; the secret shows only as its last four characters."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "client_id": "9f1b2c3d4e5f60718293a4b5c6d7e8f9",
                    "client_secret_last4": "x7Qa",
                    "subdomain": "iad1",
                    "verified_at": "2026-11-26T17:00:00Z",
                    "brand_id": "acme",
                    "qualtrics_user_id": "UR_1234567890abcde",
                    "qualtrics_user_name": "api-user@acme.example",
                    "datacenter": "iad1",
                }
            ]
        },
    )

    client_id: str
    client_secret_last4: str
    subdomain: str
    verified_at: datetime = Field(description="When Qualtrics last accepted the credentials.")
    brand_id: str | None
    qualtrics_user_id: str | None
    qualtrics_user_name: str | None
    datacenter: str | None
