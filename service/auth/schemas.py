import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from service.interactions.schemas import no_nul
from service.models import Role


class TokenRequest(BaseModel):
    """OAuth2 password grant (RFC 6749 §4.3), form-encoded, as Swagger UI's Authorize sends it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"grant_type": "password", "username": "admin@example.com", "password": "..."}
            ]
        }
    )

    grant_type: Literal["password"] | None = Field(
        default=None, description="`password`, or omit it."
    )
    # Compared in SQL: a NUL is a 422 here, not a PostgreSQL error (500).
    username: Annotated[str, AfterValidator(no_nul)] = Field(
        max_length=320, description="Your email address."
    )
    password: str = Field(max_length=1024)
    scope: str = Field(default="", max_length=1000, description="Ignored: roles decide access.")


class AccessToken(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJIUzI1NiIs...",
                    "token_type": "bearer",
                    "expires_in": 900,
                }
            ]
        }
    )

    access_token: str
    token_type: str = Field(default="bearer", description="Always `bearer`.")
    expires_in: int = Field(description="Seconds until the token expires.")


class Me(BaseModel):
    """The signed-in user, their organization and when they last authenticated."""

    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "user_id": "0b7e4a52-8f4e-4d7b-9a55-3f2d0c8b1e11",
                    "email": "admin@example.com",
                    "role": "admin",
                    "organization_id": "5f0c6a2e-2d3b-4a8e-9c1f-7a6b5c4d3e2f",
                    "organization_name": "Example Corp",
                    "qualtrics_enabled": True,
                    "authenticated_at": "2026-11-26T17:00:00Z",
                    "step_up_valid_until": "2026-11-26T17:10:00Z",
                }
            ]
        },
    )

    user_id: uuid.UUID
    email: str
    role: Role
    organization_id: uuid.UUID
    organization_name: str
    qualtrics_enabled: bool
    authenticated_at: datetime
    step_up_valid_until: datetime = Field(
        description="Until when sensitive actions are allowed without signing in again."
    )
