"""The audit log: one row for every change of configuration or state."""

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from service.auth.dependencies import Principal
from service.models import AuditLogEntry


class AuditService:
    def record(
        self,
        session: AsyncSession,
        *,
        organization_id: uuid.UUID,
        actor: Principal | str,
        action: str,
        integration_id: uuid.UUID | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditLogEntry:
        """Add an entry to the caller's transaction, so it commits (or not) with the change."""
        entry = AuditLogEntry(
            organization_id=organization_id,
            actor_user_id=actor.user.id if isinstance(actor, Principal) else None,
            actor=actor.label if isinstance(actor, Principal) else actor,
            action=action,
            integration_id=integration_id,
            details=details or {},
        )
        session.add(entry)
        return entry


audit = AuditService()
