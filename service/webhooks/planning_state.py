"""What intake's PostgreSQL writers plan with: each organization's candidates, read once and
then checked, not re-read, by every batch.

Reading the integrations and triggers before each batch cost a round trip per batch, which
under load waits behind the event loop like any other (a few milliseconds, the batch's
webhooks waiting with it). Instead the state is kept with a fingerprint that PostgreSQL
computes (md5 over the integrations that collect matches, their enabled/health state and
their triggers' ids and versions), and the batch's one statement recomputes it in the same
snapshot as its inserts (service.webhooks.bulk): if any organization's state changed since it
was read, the statement inserts nothing and names those organizations, and the writer reads
them again and plans the batch again. So a batch is always planned with the state its insert
sees: as fresh as re-reading before each batch, and the batch still costs one round trip.
"""

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.delivery.planner import Candidate, assemble_candidates, trigger_rows
from service.kit.pinned import PinnedConnection
from service.models import Trigger

# The fingerprint of one organization's planning state, as a scalar subquery; `{organization}`
# is the SQL expression of its id. The rows are the ones `candidates` plans with, in its order.
FINGERPRINT_OF = """(
    SELECT md5(coalesce(string_agg(concat_ws(':', i.id, i.enabled, i.health, t.id, t.version),
                                   ',' ORDER BY i.id, t.position, t.created_at, t.id), ''))
    FROM integrations AS i LEFT JOIN triggers AS t ON t.integration_id = i.id
    WHERE i.organization_id = {organization}
      AND (i.enabled OR i.first_enabled_at IS NOT NULL)
)"""

# The candidates' rows and their fingerprint, read in one snapshot; an organization without
# candidates gives one row of NULLs (so the fingerprint still comes back).
_READ = f"""
SELECT {FINGERPRINT_OF.format(organization="$1")}, i.id, i.enabled, i.health, t.id, t.version
FROM (SELECT) AS always
LEFT JOIN integrations AS i
       ON i.organization_id = $1 AND (i.enabled OR i.first_enabled_at IS NOT NULL)
LEFT JOIN triggers AS t ON t.integration_id = i.id
ORDER BY i.id, t.position, t.created_at, t.id
"""  # noqa: S608 (composed of constants; the id is a parameter)

# Organizations kept at most; past this the oldest are read again when next seen.
MAX_ORGANIZATIONS = 10_000


@dataclass(frozen=True, slots=True)
class PlanningState:
    fingerprint: str
    candidates: list[Candidate]


class PlanningStates:
    """Per organization, the planning state last read, until a batch finds it changed."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._states: dict[uuid.UUID, PlanningState] = {}

    async def get(self, connection: PinnedConnection, organization_id: uuid.UUID) -> PlanningState:
        state = self._states.get(organization_id)
        if state is None:
            state = await self._read(connection, organization_id)
            if len(self._states) >= MAX_ORGANIZATIONS:
                del self._states[next(iter(self._states))]
            self._states[organization_id] = state
        return state

    def forget(self, organization_ids: Iterable[uuid.UUID]) -> None:
        for organization_id in organization_ids:
            self._states.pop(organization_id, None)

    async def _read(
        self, connection: PinnedConnection, organization_id: uuid.UUID
    ) -> PlanningState:
        rows = await connection.fetch_sql(_READ, organization_id)

        async def load(integration_id: uuid.UUID) -> Sequence[Trigger]:
            async with self._sessionmaker() as session:
                return (await session.scalars(trigger_rows(integration_id))).all()

        candidates = await assemble_candidates(
            (row[1:] for row in rows if row[1] is not None), load
        )
        return PlanningState(rows[0][0], candidates)
