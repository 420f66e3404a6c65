"""Short-lived HS256 access tokens carrying the time of authentication (for step-up)."""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from service.models.base import utc_now

ALGORITHM = "HS256"
ISSUER = "creovai-qualtrics-connector"
AUDIENCE = "connector-api"


@dataclass(frozen=True, slots=True)
class TokenClaims:
    user_id: uuid.UUID
    organization_id: uuid.UUID
    auth_time: datetime
    expires_at: datetime


def issue_access_token(
    *,
    secret: str,
    user_id: uuid.UUID,
    organization_id: uuid.UUID,
    ttl: timedelta,
    auth_time: datetime | None = None,
) -> tuple[str, datetime]:
    now = utc_now()
    expires_at = now + ttl
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": str(user_id),
        "org": str(organization_id),
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
        # RFC 9470: when the user last proved who they are; step-up compares against it.
        "auth_time": int((auth_time or now).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM), expires_at


class InvalidAccessToken(Exception):
    pass


def decode_access_token(token: str, *, secret: str) -> TokenClaims:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "org", "auth_time"]},
        )
        return TokenClaims(
            user_id=uuid.UUID(claims["sub"]),
            organization_id=uuid.UUID(claims["org"]),
            auth_time=datetime.fromtimestamp(int(claims["auth_time"]), tz=utc_now().tzinfo),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=utc_now().tzinfo),
        )
    except (jwt.InvalidTokenError, ValueError, TypeError, KeyError) as exc:
        raise InvalidAccessToken(str(exc)) from None
