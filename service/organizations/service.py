"""Operator actions on organizations and their users (the CLI calls these)."""

import base64
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.audit.service import audit
from service.auth.passwords import MIN_PASSWORD_LENGTH, hash_password
from service.kit.crypto import SecretBox
from service.models import Organization, Role, User, WebhookSecret

CLI_ACTOR = "cli"


class OrganizationError(ValueError):
    """An operator command cannot be carried out; the message says why."""


def generate_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True, slots=True)
class CreatedOrganization:
    organization: Organization
    webhook_secret: str


class OrganizationService:
    async def create(
        self,
        session: AsyncSession,
        box: SecretBox,
        *,
        name: str,
        qualtrics_enabled: bool,
    ) -> CreatedOrganization:
        name = name.strip()
        if not name:
            raise OrganizationError("the organization name may not be empty")
        organization = Organization(name=name, qualtrics_enabled=qualtrics_enabled)
        session.add(organization)
        await session.flush()
        secret = generate_webhook_secret()
        session.add(
            WebhookSecret(organization_id=organization.id, secret_encrypted=box.encrypt(secret))
        )
        audit.record(
            session,
            organization_id=organization.id,
            actor=CLI_ACTOR,
            action="organization.created",
            details={"name": name, "qualtrics_enabled": qualtrics_enabled},
        )
        return CreatedOrganization(organization=organization, webhook_secret=secret)

    async def get(self, session: AsyncSession, organization_id: uuid.UUID) -> Organization:
        organization = await session.get(Organization, organization_id)
        if organization is None:
            raise OrganizationError(f"no organization with id {organization_id}")
        return organization

    async def set_qualtrics_enabled(
        self, session: AsyncSession, organization_id: uuid.UUID, *, enabled: bool
    ) -> Organization:
        organization = await self.get(session, organization_id)
        organization.qualtrics_enabled = enabled
        audit.record(
            session,
            organization_id=organization.id,
            actor=CLI_ACTOR,
            action="organization.qualtrics_enabled_changed",
            details={"qualtrics_enabled": enabled},
        )
        return organization

    async def create_user(
        self,
        session: AsyncSession,
        *,
        organization_id: uuid.UUID,
        email: str,
        password: str,
        role: Role,
    ) -> User:
        organization = await self.get(session, organization_id)
        email = email.strip().lower()
        if "@" not in email or len(email) > 320:
            raise OrganizationError(f"{email!r} is not an email address")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise OrganizationError(
                f"the password must have at least {MIN_PASSWORD_LENGTH} characters"
            )
        if await session.scalar(select(User.id).where(User.email == email)) is not None:
            raise OrganizationError(f"a user with email {email} already exists")
        user = User(
            organization_id=organization.id,
            email=email,
            password_hash=hash_password(password),
            role=role,
        )
        session.add(user)
        await session.flush()
        audit.record(
            session,
            organization_id=organization.id,
            actor=CLI_ACTOR,
            action="user.created",
            details={"user_id": str(user.id), "email": email, "role": role.value},
        )
        return user


organization_service = OrganizationService()
