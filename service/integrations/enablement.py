"""Step 5: enabling and disabling an integration (design §6)."""

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from service.audit.service import audit
from service.auth.dependencies import Principal
from service.connections.gateway import QualtricsGateway
from service.connections.service import survey_reachable
from service.deliveries.service import delivery_service
from service.errors import Conflict
from service.integrations.readiness import StepState, step_states
from service.integrations.service import ETAG_KIND, integration_service
from service.kit.etag import check_if_match
from service.models import Integration, IntegrationHealth, QualtricsConnection, QualtricsProject
from service.models.base import utc_now


class SetupIncomplete(Conflict):
    slug = "setup-incomplete"


class StillInvalid(Conflict):
    slug = "integration-invalid"


class EnablementService:
    async def readiness(
        self, session: AsyncSession, principal: Principal, integration_id: uuid.UUID
    ) -> tuple[Integration, list[StepState]]:
        integration = await integration_service.get(session, principal, integration_id)
        return integration, await step_states(session, integration)

    async def enable(
        self,
        session: AsyncSession,
        gateway: QualtricsGateway,
        principal: Principal,
        integration_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> tuple[Integration, list[uuid.UUID]]:
        """Enable the integration and release its held deliveries.

        Answers the integration and the ids of the released deliveries, now due, for the
        caller to enqueue once the transaction has committed.
        """
        integration, steps = await self.readiness(session, principal, integration_id)
        check_if_match(if_match, ETAG_KIND, integration.version)
        incomplete = [state for state in steps if not state.complete]
        if incomplete:
            raise SetupIncomplete(
                "The integration cannot be enabled until every setup step is complete: "
                + ", ".join(state.step.value for state in incomplete)
                + ".",
                extra={
                    "incomplete_steps": [
                        {"step": state.step.value, "reason": state.reason} for state in incomplete
                    ]
                },
            )
        if integration.health == IntegrationHealth.INVALID:
            await self._recheck(session, gateway, integration, principal)
        if not integration.enabled:
            integration.enabled = True
            integration.first_enabled_at = integration.first_enabled_at or utc_now()
            integration_service.touch(integration)
            audit.record(
                session,
                organization_id=integration.organization_id,
                actor=principal,
                action="integration.enabled",
                integration_id=integration.id,
            )
            await session.flush()
        # Also when it was enabled already: a match planned while it was being enabled may
        # have been held.
        released = await delivery_service.release_held(session, integration, actor=principal)
        return integration, released

    async def _recheck(
        self,
        session: AsyncSession,
        gateway: QualtricsGateway,
        integration: Integration,
        principal: Principal,
    ) -> None:
        """An invalid integration is enabled only once Qualtrics accepts it again."""
        connection = await session.get(QualtricsConnection, integration.id)
        project = await session.get(QualtricsProject, integration.id)
        # The steps are complete, so both exist.
        assert connection is not None  # noqa: S101
        assert project is not None  # noqa: S101
        if not await survey_reachable(gateway.client_for(connection), project.survey_id):
            raise StillInvalid(
                f"The integration is still invalid: {integration.health_reason} "
                "Fix the credentials (step 1) or create a new project (step 2)."
            )
        integration_service.mark_healthy(session, integration, actor=principal)

    async def disable(
        self,
        session: AsyncSession,
        principal: Principal,
        integration_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> Integration:
        integration = await integration_service.get(session, principal, integration_id)
        check_if_match(if_match, ETAG_KIND, integration.version)
        if integration.enabled:
            integration.enabled = False
            integration_service.touch(integration)
            audit.record(
                session,
                organization_id=integration.organization_id,
                actor=principal,
                action="integration.disabled",
                integration_id=integration.id,
            )
            await session.flush()
        return integration


enablement_service = EnablementService()
