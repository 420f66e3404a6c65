from typing import Annotated

from fastapi import APIRouter, Form, Request

from service.auth.dependencies import CurrentPrincipal, SettingsDep
from service.auth.schemas import AccessToken, Me, TokenRequest
from service.auth.service import auth as auth_service
from service.auth.tokens import issue_access_token
from service.db import SessionDep
from service.errors import problem_responses
from service.models import Organization

router = APIRouter(prefix="/v1", tags=["auth"])


@router.post(
    "/auth/token",
    response_model=AccessToken,
    summary="Sign in (OAuth2 password flow)",
    responses=problem_responses(401, 422, 429),
)
async def create_token(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    form: Annotated[TokenRequest, Form()],
) -> AccessToken:
    """Exchange email (as `username`) and password for a short-lived access token."""
    user = await auth_service.authenticate(
        session,
        request.app.state.sessionmaker,
        settings,
        email=form.username,
        password=form.password,
    )
    token, _ = issue_access_token(
        secret=settings.jwt_secret.get_secret_value(),
        user_id=user.id,
        organization_id=user.organization_id,
        ttl=settings.access_token_ttl,
    )
    return AccessToken(
        access_token=token, expires_in=int(settings.access_token_ttl.total_seconds())
    )


@router.get("/me", response_model=Me, summary="Who am I", responses=problem_responses(401))
async def get_me(principal: CurrentPrincipal, session: SessionDep, settings: SettingsDep) -> Me:
    """The signed-in user, their organization, and how long step-up actions stay allowed."""
    organization = await session.get(Organization, principal.organization_id)
    assert organization is not None  # noqa: S101 (users cascade with their organization)
    return Me(
        user_id=principal.user.id,
        email=principal.user.email,
        role=principal.user.role,
        organization_id=organization.id,
        organization_name=organization.name,
        qualtrics_enabled=organization.qualtrics_enabled,
        authenticated_at=principal.claims.auth_time,
        step_up_valid_until=principal.claims.auth_time + settings.step_up_max_age,
    )
