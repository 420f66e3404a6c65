"""Reading and replacing an organization's catalogue.

Decisions, so callers can rely on them:

- An organization that never stored a catalogue has the empty document at version 0 (ETag
  `"catalog-0"`, `updated_at` null). No row exists until the first real change.
- `replace` writes only when the document differs from the stored one (compared after
  validation, so whitespace or `3` vs `3.0` are no change). An unchanged document keeps its
  version, `updated_at` and ETag, and writes no audit entry: a platform that re-sends the same
  catalogue on every sync leaves no noise.
- Concurrency: `If-Match` is checked against the stored version; besides, the row's
  `version_id_col` makes the UPDATE conditional, and the first INSERT relies on the primary key.
  Losing either race (StaleDataError, or IntegrityError when another request created the row
  first) answers 412, with or without `If-Match`: another writer changed the catalogue between
  our read and our write, so the caller re-reads and retries. The transaction is rolled back by
  then, so the caller must not use the session further.
- Like every service, this one only flushes; the caller's session commits.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from service.audit.service import audit
from service.auth.dependencies import Principal
from service.catalog.schemas import CatalogDocument
from service.errors import PreconditionFailed
from service.kit.etag import check_if_match, etag_for
from service.models import Catalog

ETAG_KIND = "catalog"
AUDIT_ACTION = "catalog.replaced"

_CONCURRENT_CHANGE = (
    "The catalogue was changed by another request at the same time; "
    "read it again and reapply your change."
)


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    """The catalogue at one version: what GET answers and what `replace` returns."""

    document: CatalogDocument
    version: int
    updated_at: datetime | None

    @property
    def etag(self) -> str:
        return etag_for(ETAG_KIND, self.version)


def _snapshot(row: Catalog | None) -> CatalogSnapshot:
    if row is None:
        return CatalogSnapshot(document=CatalogDocument(), version=0, updated_at=None)
    return CatalogSnapshot(
        document=CatalogDocument.model_validate(row.document),
        version=row.version,
        updated_at=row.updated_at,
    )


class CatalogService:
    async def get(self, session: AsyncSession, organization_id: uuid.UUID) -> CatalogSnapshot:
        return _snapshot(await self._load(session, organization_id))

    async def get_document(
        self, session: AsyncSession, organization_id: uuid.UUID
    ) -> CatalogDocument:
        """The current document (empty when none was stored), for validating against it."""
        return (await self.get(session, organization_id)).document

    async def replace(
        self,
        session: AsyncSession,
        *,
        organization_id: uuid.UUID,
        document: CatalogDocument,
        actor: Principal | str,
        if_match: str | None = None,
    ) -> CatalogSnapshot:
        """Replace the whole document; raise PreconditionFailed (412) on a stale `if_match`."""
        row = await self._load(session, organization_id)
        current = _snapshot(row)
        check_if_match(if_match, ETAG_KIND, current.version)
        # `include`: a subclass (such as the API's `Catalog`) must not leak its extra fields.
        stored = document.model_dump(mode="json", include=set(CatalogDocument.model_fields))
        if stored == current.document.model_dump(mode="json"):
            return current

        if row is None:
            row = Catalog(organization_id=organization_id, document=stored)
            session.add(row)
            try:
                await session.flush()
            except IntegrityError as exc:  # another request created the row first
                raise PreconditionFailed(_CONCURRENT_CHANGE) from exc
        else:
            row.document = stored
            try:
                await session.flush()
            except StaleDataError as exc:  # another request updated it since we read it
                raise PreconditionFailed(_CONCURRENT_CHANGE) from exc

        audit.record(
            session,
            organization_id=organization_id,
            actor=actor,
            action=AUDIT_ACTION,
            details={
                "version": row.version,
                "previous_version": current.version,
                "counts": document.counts(),
            },
        )
        return CatalogSnapshot(document=document, version=row.version, updated_at=row.updated_at)

    async def _load(self, session: AsyncSession, organization_id: uuid.UUID) -> Catalog | None:
        # populate_existing: a row already in this session's identity map may be stale.
        return await session.get(Catalog, organization_id, populate_existing=True)


catalog = CatalogService()
