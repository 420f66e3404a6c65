"""Who is calling: the bearer token's user, their role, and how recently they authenticated."""

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from service.auth.tokens import InvalidAccessToken, TokenClaims, decode_access_token
from service.config import Settings
from service.db import SessionDep
from service.errors import Forbidden, StepUpRequired, Unauthorized
from service.models import Role, User
from service.models.base import utc_now

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False)


@dataclass(frozen=True, slots=True)
class Principal:
    user: User
    claims: TokenClaims

    @property
    def organization_id(self) -> uuid.UUID:
        return self.user.organization_id

    @property
    def label(self) -> str:
        """How the audit log names this actor."""
        return self.user.email


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def current_principal(
    session: SessionDep,
    settings: SettingsDep,
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Principal:
    if not token:
        raise Unauthorized("Authentication is required: send `Authorization: Bearer <token>`.")
    try:
        claims = decode_access_token(token, secret=settings.jwt_secret.get_secret_value())
    except InvalidAccessToken:
        raise Unauthorized(
            "The access token is invalid or expired: sign in again at /v1/auth/token.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from None
    user = await session.get(User, claims.user_id)
    # The role and organization come from the database, not the token, so a removed or
    # demoted user loses access at once.
    if user is None or user.organization_id != claims.organization_id:
        raise Unauthorized(
            "The account behind this token no longer exists.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        )
    return Principal(user=user, claims=claims)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


async def require_admin(principal: CurrentPrincipal) -> Principal:
    if principal.user.role != Role.ADMIN:
        raise Forbidden("This action needs the admin role; your role is viewer.")
    return principal


AdminPrincipal = Annotated[Principal, Depends(require_admin)]


async def require_recent_admin(principal: AdminPrincipal, settings: SettingsDep) -> Principal:
    """Step-up: sensitive actions need an authentication no older than the configured age."""
    max_age = settings.step_up_max_age
    if utc_now() - principal.claims.auth_time > max_age:
        seconds = int(max_age.total_seconds())
        raise StepUpRequired(
            f"This action needs a recent sign-in (within {seconds // 60} minutes): "
            "sign in again at /v1/auth/token and retry with the new token.",
            headers={
                "WWW-Authenticate": (
                    'Bearer error="insufficient_user_authentication", '
                    'error_description="A recent authentication is required", '
                    f'max_age="{seconds}"'
                )
            },
        )
    return principal


RecentAdminPrincipal = Annotated[Principal, Depends(require_recent_admin)]
