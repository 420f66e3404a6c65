"""Triggers (setup step 4): create, read, change, reorder, enable, disable, delete.

Decisions, so callers can rely on them:

- Positions are 0, 1, 2, ... in evaluation order. Create appends; moving a trigger (PATCH
  `position`) shifts the ones in between; deleting closes the gap. A moved neighbour's version
  (and ETag) changes too, because its position did.
- An integration has at most `MAX_TRIGGERS_PER_INTEGRATION` triggers (409 beyond), so the list
  is answered whole, in position order, not paginated.
- Names are unique within the integration, compared exactly (409).
- Criteria are checked against the catalogue whenever they are written (422 with a pointer per
  unknown name); a change of name, position or enabled flag alone does not re-check them.
- Writes to one integration's triggers are serialized by a row lock on the integration
  (PostgreSQL; SQLite serializes writers anyway), so two creates cannot take one position.
- A write that changes nothing (same name, same criteria, enabling an enabled trigger) bumps
  no version and writes no audit entry. Every real change is audited with the integration id:
  `trigger.created`, `trigger.updated` (name, criteria, position), `trigger.enabled`,
  `trigger.disabled`, `trigger.deleted`.
- Like every service, this one only flushes; the caller's session commits.
"""

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.audit.service import audit
from service.auth.dependencies import Principal
from service.catalog.service import catalog as catalog_service
from service.errors import Conflict, FieldError, NotFound, UnprocessableEntity
from service.integrations.service import integration_service
from service.kit.etag import check_if_match
from service.models import Integration, Trigger
from service.triggers.criteria import catalog_errors
from service.triggers.matching import CompiledTrigger, TriggerSet, compile_trigger
from service.triggers.schemas import (
    MAX_TRIGGERS_PER_INTEGRATION,
    Criteria,
    TriggerCreate,
    TriggerUpdate,
)

ETAG_KIND = "trigger"


def compile_row(trigger: Trigger) -> CompiledTrigger:
    """The engine's form of a stored trigger."""
    return compile_trigger(
        trigger.id,
        Criteria.model_validate(trigger.criteria),
        name=trigger.name,
        enabled=trigger.enabled,
        position=trigger.position,
    )


class TriggerService:
    # --- For the pipeline and readiness (no caller scoping: the integration id is trusted) ---

    async def list_for_integration(
        self, session: AsyncSession, integration_id: uuid.UUID
    ) -> list[Trigger]:
        """The integration's triggers in evaluation order."""
        rows = await session.scalars(
            select(Trigger)
            .where(Trigger.integration_id == integration_id)
            .order_by(Trigger.position, Trigger.created_at, Trigger.id)
        )
        return list(rows.all())

    async def compiled_for_integration(
        self, session: AsyncSession, integration_id: uuid.UUID
    ) -> TriggerSet:
        """The integration's triggers compiled and indexed, in position order.

        A `TriggerSet` is a read-only sequence of `CompiledTrigger`; pass it to
        `matching.first_match` (or call its `first_match`) to reuse its index.
        """
        return TriggerSet(
            compile_row(row) for row in await self.list_for_integration(session, integration_id)
        )

    # --- The API: scoped to the caller's organization ---

    async def list_for_principal(
        self, session: AsyncSession, principal: Principal, integration_id: uuid.UUID
    ) -> list[Trigger]:
        integration = await integration_service.get(session, principal, integration_id)
        return await self.list_for_integration(session, integration.id)

    async def get(
        self,
        session: AsyncSession,
        principal: Principal,
        integration_id: uuid.UUID,
        trigger_id: uuid.UUID,
    ) -> Trigger:
        integration = await integration_service.get(session, principal, integration_id)
        return await self._get_in(session, integration.id, trigger_id)

    async def create(
        self,
        session: AsyncSession,
        principal: Principal,
        integration_id: uuid.UUID,
        data: TriggerCreate,
    ) -> Trigger:
        integration = await self._locked_integration(session, principal, integration_id)
        await self._check_against_catalog(session, principal, data.criteria)
        siblings = await self.list_for_integration(session, integration.id)
        if len(siblings) >= MAX_TRIGGERS_PER_INTEGRATION:
            raise Conflict(
                f"This integration already has {len(siblings)} triggers, the most allowed; "
                "delete or combine some first."
            )
        self._ensure_name_free(siblings, data.name)
        trigger = Trigger(
            integration_id=integration.id,
            name=data.name,
            enabled=data.enabled,
            position=len(siblings),
            criteria=data.criteria.stored(),
        )
        session.add(trigger)
        await session.flush()
        self._audit(
            session,
            principal,
            trigger,
            "trigger.created",
            {
                "enabled": trigger.enabled,
                "position": trigger.position,
                "criteria": trigger.criteria,
            },
        )
        return trigger

    async def update(
        self,
        session: AsyncSession,
        principal: Principal,
        integration_id: uuid.UUID,
        trigger_id: uuid.UUID,
        data: TriggerUpdate,
        *,
        if_match: str | None,
    ) -> Trigger:
        integration = await self._locked_integration(session, principal, integration_id)
        trigger = await self._get_in(session, integration.id, trigger_id)
        check_if_match(if_match, ETAG_KIND, trigger.version)
        if data.criteria is not None:
            await self._check_against_catalog(session, principal, data.criteria)
        siblings = await self.list_for_integration(session, integration.id)
        changes: dict[str, Any] = {}

        if data.name is not None and data.name != trigger.name:
            self._ensure_name_free(siblings, data.name)
            changes["name"] = {"from": trigger.name, "to": data.name}
            trigger.name = data.name
        if data.criteria is not None:
            stored = data.criteria.stored()
            if stored != trigger.criteria:
                changes["criteria"] = {"from": trigger.criteria, "to": stored}
                trigger.criteria = stored
        if data.position is not None:
            moved_from = self._index_of(siblings, trigger)
            if data.position >= len(siblings):
                raise UnprocessableEntity(
                    "The position is beyond the last trigger.",
                    errors=[
                        FieldError(
                            pointer="/body/position",
                            detail=f"Must be between 0 and {len(siblings) - 1}.",
                        )
                    ],
                )
            if data.position != moved_from:
                changes["position"] = {"from": moved_from, "to": data.position}
                siblings.insert(data.position, siblings.pop(moved_from))
            self._renumber(siblings)
        enabled_changed = data.enabled is not None and data.enabled != trigger.enabled
        if enabled_changed:
            trigger.enabled = bool(data.enabled)

        await session.flush()
        if changes:
            self._audit(session, principal, trigger, "trigger.updated", {"changes": changes})
        if enabled_changed:
            self._audit_enabled(session, principal, trigger)
        return trigger

    async def set_enabled(
        self,
        session: AsyncSession,
        principal: Principal,
        integration_id: uuid.UUID,
        trigger_id: uuid.UUID,
        *,
        enabled: bool,
        if_match: str | None,
    ) -> Trigger:
        """Enable or disable one trigger; doing it again changes nothing."""
        integration = await self._locked_integration(session, principal, integration_id)
        trigger = await self._get_in(session, integration.id, trigger_id)
        check_if_match(if_match, ETAG_KIND, trigger.version)
        if trigger.enabled != enabled:
            trigger.enabled = enabled
            await session.flush()
            self._audit_enabled(session, principal, trigger)
        return trigger

    async def delete(
        self,
        session: AsyncSession,
        principal: Principal,
        integration_id: uuid.UUID,
        trigger_id: uuid.UUID,
        *,
        if_match: str | None,
    ) -> None:
        integration = await self._locked_integration(session, principal, integration_id)
        trigger = await self._get_in(session, integration.id, trigger_id)
        check_if_match(if_match, ETAG_KIND, trigger.version)
        siblings = await self.list_for_integration(session, integration.id)
        self._audit(
            session,
            principal,
            trigger,
            "trigger.deleted",
            {"position": trigger.position, "criteria": trigger.criteria},
        )
        siblings.pop(self._index_of(siblings, trigger))
        await session.delete(trigger)
        await session.flush()
        self._renumber(siblings)
        await session.flush()

    # --- Helpers ---

    async def _locked_integration(
        self, session: AsyncSession, principal: Principal, integration_id: uuid.UUID
    ) -> Integration:
        integration = await integration_service.get(session, principal, integration_id)
        # Serialize trigger writes per integration: positions and the trigger cap are computed
        # from a read of the siblings. FOR UPDATE is a no-op on SQLite, which has one writer.
        await session.execute(
            select(Integration.id).where(Integration.id == integration.id).with_for_update()
        )
        return integration

    async def _get_in(
        self, session: AsyncSession, integration_id: uuid.UUID, trigger_id: uuid.UUID
    ) -> Trigger:
        trigger = await session.scalar(
            select(Trigger).where(
                Trigger.id == trigger_id, Trigger.integration_id == integration_id
            )
        )
        # Another integration's trigger is indistinguishable from a missing one.
        if trigger is None:
            raise NotFound(f"Trigger {trigger_id} was not found in this integration.")
        return trigger

    async def _check_against_catalog(
        self, session: AsyncSession, principal: Principal, criteria: Criteria
    ) -> None:
        catalog = await catalog_service.get_document(session, principal.organization_id)
        errors = catalog_errors(criteria, catalog)
        if errors:
            raise UnprocessableEntity(
                f"The criteria name {len(errors)} thing(s) the catalogue does not have; "
                "update the catalogue (PUT /v1/catalog) or correct the names.",
                errors=errors,
            )

    @staticmethod
    def _ensure_name_free(siblings: list[Trigger], name: str) -> None:
        if any(sibling.name == name for sibling in siblings):
            raise Conflict(f"A trigger named {name!r} already exists in this integration.")

    @staticmethod
    def _index_of(siblings: list[Trigger], trigger: Trigger) -> int:
        return next(index for index, sibling in enumerate(siblings) if sibling is trigger)

    @staticmethod
    def _renumber(siblings: list[Trigger]) -> None:
        for index, sibling in enumerate(siblings):
            if sibling.position != index:
                sibling.position = index

    @staticmethod
    def _audit(
        session: AsyncSession,
        principal: Principal,
        trigger: Trigger,
        action: str,
        details: dict[str, Any],
    ) -> None:
        audit.record(
            session,
            organization_id=principal.organization_id,
            actor=principal,
            action=action,
            integration_id=trigger.integration_id,
            details={"trigger_id": str(trigger.id), "name": trigger.name, **details},
        )

    def _audit_enabled(self, session: AsyncSession, principal: Principal, trigger: Trigger) -> None:
        action = "trigger.enabled" if trigger.enabled else "trigger.disabled"
        self._audit(session, principal, trigger, action, {})


trigger_service = TriggerService()
