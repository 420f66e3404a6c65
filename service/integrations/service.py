"""Integrations: create, read, rename, delete, scoped to the caller's organization."""

import uuid

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.audit.service import audit
from service.auth.dependencies import Principal
from service.errors import Conflict, Forbidden, NotFound
from service.integrations.schemas import IntegrationCreate, IntegrationUpdate
from service.kit.etag import check_if_match
from service.models import Integration, IntegrationHealth, Organization
from service.models.base import utc_now

ETAG_KIND = "integration"


class IntegrationService:
    def scoped(self, principal: Principal) -> Select[Integration]:
        return select(Integration).where(Integration.organization_id == principal.organization_id)

    async def get(
        self, session: AsyncSession, principal: Principal, integration_id: uuid.UUID
    ) -> Integration:
        integration = await session.scalar(
            self.scoped(principal).where(Integration.id == integration_id)
        )
        # Another organization's integration is indistinguishable from a missing one.
        if integration is None:
            raise NotFound(f"Integration {integration_id} was not found.")
        return integration

    async def create(
        self, session: AsyncSession, principal: Principal, data: IntegrationCreate
    ) -> Integration:
        organization = await session.get(Organization, principal.organization_id)
        if organization is None or not organization.qualtrics_enabled:
            raise Forbidden(
                "Qualtrics integrations are not enabled for your organization; "
                "ask Creovai support to enable them."
            )
        await self._ensure_name_free(session, principal, data.name)
        integration = Integration(organization_id=principal.organization_id, name=data.name)
        session.add(integration)
        await session.flush()
        audit.record(
            session,
            organization_id=principal.organization_id,
            actor=principal,
            action="integration.created",
            integration_id=integration.id,
            details={"name": integration.name},
        )
        return integration

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        integration_id: uuid.UUID,
        data: IntegrationUpdate,
        *,
        if_match: str | None,
    ) -> Integration:
        integration = await self.get(session, principal, integration_id)
        check_if_match(if_match, ETAG_KIND, integration.version)
        if data.name is not None and data.name != integration.name:
            await self._ensure_name_free(session, principal, data.name)
            audit.record(
                session,
                organization_id=principal.organization_id,
                actor=principal,
                action="integration.renamed",
                integration_id=integration.id,
                details={"from": integration.name, "to": data.name},
            )
            integration.name = data.name
            await session.flush()
        return integration

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        integration_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> None:
        integration = await self.get(session, principal, integration_id)
        check_if_match(if_match, ETAG_KIND, integration.version)
        audit.record(
            session,
            organization_id=principal.organization_id,
            actor=principal,
            action="integration.deleted",
            integration_id=integration.id,
            details={"name": integration.name},
        )
        await session.delete(integration)
        await session.flush()

    def touch(self, integration: Integration) -> None:
        """Record that a part of the integration changed: a new version, so a new ETag."""
        integration.updated_at = utc_now()

    def invalidate(
        self,
        session: AsyncSession,
        integration: Integration,
        *,
        reason: str,
        actor: Principal | str,
    ) -> None:
        """Mark the integration invalid and disabled (design §6); its matches are held."""
        was_enabled = integration.enabled
        integration.health = IntegrationHealth.INVALID
        integration.health_reason = reason
        integration.enabled = False
        self.touch(integration)
        audit.record(
            session,
            organization_id=integration.organization_id,
            actor=actor,
            action="integration.invalidated",
            integration_id=integration.id,
            details={"reason": reason, "was_enabled": was_enabled},
        )

    def mark_healthy(
        self, session: AsyncSession, integration: Integration, *, actor: Principal | str
    ) -> None:
        if integration.health == IntegrationHealth.OK:
            return
        integration.health = IntegrationHealth.OK
        integration.health_reason = None
        self.touch(integration)
        audit.record(
            session,
            organization_id=integration.organization_id,
            actor=actor,
            action="integration.healthy",
            integration_id=integration.id,
        )

    async def _ensure_name_free(
        self, session: AsyncSession, principal: Principal, name: str
    ) -> None:
        taken = await session.scalar(
            self.scoped(principal).where(Integration.name == name).with_only_columns(Integration.id)
        )
        if taken is not None:
            raise Conflict(f"An integration named {name!r} already exists.")


integration_service = IntegrationService()
