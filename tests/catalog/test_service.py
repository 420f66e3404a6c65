"""The service API other parts call directly (the `catalog.updated` webhook, data-field checks)."""

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.catalog.schemas import CatalogDocument
from service.catalog.service import catalog as catalog_service
from service.errors import PreconditionFailed
from service.models import AuditLogEntry
from tests.catalog.documents import valid_document
from tests.conftest import Account


class TestCatalogService:
    async def test_get_document_of_a_new_organization_is_empty(
        self, admin: Account, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker() as session:
            document = await catalog_service.get_document(session, admin.organization.id)
        assert document == CatalogDocument()

    async def test_replace_by_a_system_actor(
        self, admin: Account, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        document = CatalogDocument.model_validate(valid_document())
        async with sessionmaker.begin() as session:
            snapshot = await catalog_service.replace(
                session,
                organization_id=admin.organization.id,
                document=document,
                actor="webhook",
            )
        assert snapshot.version == 1
        assert snapshot.etag == '"catalog-1"'
        assert snapshot.updated_at is not None

        async with sessionmaker() as session:
            assert await catalog_service.get_document(session, admin.organization.id) == document
            entry = await session.scalar(
                select(AuditLogEntry).where(AuditLogEntry.action == "catalog.replaced")
            )
        assert entry is not None
        assert entry.actor == "webhook"
        assert entry.actor_user_id is None

    async def test_stale_if_match_raises_precondition_failed(
        self, admin: Account, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        async with sessionmaker() as session:
            with pytest.raises(PreconditionFailed):
                await catalog_service.replace(
                    session,
                    organization_id=admin.organization.id,
                    document=CatalogDocument(),
                    actor="webhook",
                    if_match='"catalog-7"',
                )
