import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AfterValidator
from sqlalchemy import select

from service.audit.schemas import AuditLogEntry as AuditLogEntrySchema
from service.auth.dependencies import AdminPrincipal
from service.db import SessionDep
from service.errors import problem_responses
from service.interactions.schemas import no_nul
from service.kit.pagination import Page, PageParams, page_params, paginate
from service.models import AuditLogEntry

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get(
    "/audit-log",
    response_model=Page[AuditLogEntrySchema],
    summary="List audit log entries",
    responses=problem_responses(400, 401, 403, 422),
)
async def list_audit_log(
    principal: AdminPrincipal,
    session: SessionDep,
    page: Annotated[PageParams, Depends(page_params)],
    integration_id: Annotated[
        uuid.UUID | None, Query(description="Only entries about this integration.")
    ] = None,
    action: Annotated[
        # Compared in SQL: a NUL is a 422 here, not a PostgreSQL error (500).
        Annotated[str, AfterValidator(no_nul)] | None,
        Query(max_length=100, description="Only entries with this action."),
    ] = None,
) -> Page[AuditLogEntrySchema]:
    """Who changed what, newest first (admins only)."""
    statement = select(AuditLogEntry).where(
        AuditLogEntry.organization_id == principal.organization_id
    )
    if integration_id is not None:
        statement = statement.where(AuditLogEntry.integration_id == integration_id)
    if action is not None:
        statement = statement.where(AuditLogEntry.action == action)
    rows, next_cursor = await paginate(
        session,
        statement,
        created_at=AuditLogEntry.created_at,
        row_id=AuditLogEntry.id,
        params=page,
    )
    return Page(
        items=[AuditLogEntrySchema.model_validate(row) for row in rows], next_cursor=next_cursor
    )
