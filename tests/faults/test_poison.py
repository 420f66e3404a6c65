"""(j) Poison: stored interactions that can no longer be encoded (their payload corrupted in
the database after intake). Each fails alone, with the reason; the others are delivered, and
the worker keeps going."""

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.models import DeliveryStatus, Interaction
from tests.faults.conftest import Scenario, ScenarioFactory
from tests.worker.conftest import Workers


async def corrupt(
    sessionmaker: async_sessionmaker[AsyncSession], run: Scenario, external_id: str, payload: object
) -> None:
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Interaction)
            .where(
                Interaction.organization_id == run.integration.organization_id,
                Interaction.external_id == external_id,
            )
            .values(payload=payload)
        )


async def test_poison_interactions_fail_alone_with_a_reason(
    scenario: ScenarioFactory,
    workers: Workers,
    sessionmaker: async_sessionmaker[AsyncSession],
    fake_control: httpx.AsyncClient,
) -> None:
    run = await scenario("poison_interaction")
    ids = await run.acknowledge(10)  # queued in Redis; no worker runs yet
    # One that no longer matches the interaction schema, one that is not even an object.
    await corrupt(sessionmaker, run, ids[2], {"id": ids[2], "channel": 42, "agent": "nobody"})
    await corrupt(sessionmaker, run, ids[7], ["not", "an", "interaction"])
    worker = workers.start()

    await run.finish({DeliveryStatus.DELIVERED: 8, DeliveryStatus.FAILED: 2}, within=20)
    failed = {
        row.external_id: row for row in await run.rows() if row.status is DeliveryStatus.FAILED
    }
    assert sorted(failed) == sorted([ids[2], ids[7]])
    for row in failed.values():
        assert (row.last_error or "").startswith("The stored interaction no longer validates:")
        assert row.attempts == 0  # refused before anything was sent
    assert worker.process is not None
    assert worker.process.poll() is None
