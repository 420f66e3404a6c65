"""Scheduled health checks (design §6): enabled integrations whose survey is gone stop.

Deliveries find a deleted survey or revoked credentials on their own, but an integration
whose triggers rarely match could sit "enabled" for weeks against a survey that no longer
exists. The worker therefore checks every enabled integration now and then, with the same
call step 1 uses, and invalidates (and holds) the ones Qualtrics definitely refuses.
Transient trouble (timeouts, 5xx, 429) proves nothing and changes nothing.
"""

import asyncio
import logging
import uuid

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.connections.gateway import QualtricsGateway
from service.delivery.records import invalidate_and_hold
from service.models import Integration, QualtricsConnection, QualtricsProject
from service.qualtrics import (
    QualtricsAuthRejected,
    QualtricsError,
    QualtricsForbidden,
    QualtricsNotFound,
)

logger = logging.getLogger(__name__)


async def check_enabled_integrations(
    sessionmaker: async_sessionmaker[AsyncSession], gateway: QualtricsGateway
) -> list[uuid.UUID]:
    """Check each enabled integration once; return the ids it invalidated."""
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(QualtricsConnection, QualtricsProject)
                .join(Integration, Integration.id == QualtricsConnection.integration_id)
                .join(QualtricsProject, QualtricsProject.integration_id == Integration.id)
                .where(Integration.enabled.is_(True))
            )
        ).all()
    invalidated = []
    for connection, project in rows:
        reason = await _refusal(gateway, connection, project)
        if reason is None:
            continue
        async with sessionmaker.begin() as session:
            await invalidate_and_hold(session, connection.integration_id, reason)
        invalidated.append(connection.integration_id)
        logger.warning(
            "integration invalidated by the health check",
            extra={"integration_id": str(connection.integration_id), "reason": reason},
        )
    return invalidated


async def _refusal(
    gateway: QualtricsGateway, connection: QualtricsConnection, project: QualtricsProject
) -> str | None:
    try:
        await gateway.client_for(connection).get_survey_definition(project.survey_id)
    except QualtricsAuthRejected:
        return (
            "Qualtrics rejected the credentials during a health check: save working "
            "credentials (step 1)."
        )
    except (QualtricsNotFound, QualtricsForbidden):
        return (
            f"The survey {project.survey_id} is no longer reachable in Qualtrics (health "
            "check): create a new project (step 2)."
        )
    except QualtricsError:
        return None
    return None


class HealthCheckLoop:
    """Runs the checks every `interval`, once per interval across all workers.

    With Redis, a `SET NX EX` key elects the worker that checks in each interval, so adding
    workers does not multiply the calls to Qualtrics; the embedded default has one process.
    """

    LOCK_KEY = "connector:health-check:lock"

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        gateway: QualtricsGateway,
        *,
        interval: float,
        redis: Redis | None = None,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._gateway = gateway
        self._interval = interval
        self._redis = redis
        self._task: asyncio.Task[None] | None = None

    async def _elected(self) -> bool:
        if self._redis is None:
            return True
        try:
            won = await self._redis.set(self.LOCK_KEY, "1", nx=True, ex=max(1, int(self._interval)))
        except RedisError:
            return False  # no election without Redis: skip a turn rather than run everywhere
        return bool(won)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                if await self._elected():
                    await check_enabled_integrations(self._sessionmaker, self._gateway)
            except Exception:
                logger.warning("integration health check failed; next turn", exc_info=True)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="integration-health-checks")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
