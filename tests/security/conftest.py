"""Fixtures for the security tests: one fully configured integration with a trigger, an
interaction and a delivery (so every path parameter has a real value), and a dispatcher that
records the exact bytes arq would store for each job."""

import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from arq.jobs import serialize_job
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import service.organizations.service as organizations_module
from service.auth.passwords import hash_password
from service.delivery.queue import ArqDispatcher, job_serializer
from service.models import Delivery, DeliveryStatus
from service.testing.fake_qualtrics import FakeQualtrics
from tests.conftest import CANARY_SECRETS, TEST_PASSWORD, Account
from tests.setup.helpers import enabled_integration
from tests.webhooks.helpers import event, interaction, organization_secret, post_event

# A real Argon2id hash of the test password, computed once: the matrix creates three accounts
# per test, and hashing is most of the cost of a test. Signing in still verifies it for real.
_TEST_PASSWORD_HASH = hash_password(TEST_PASSWORD)


@pytest.fixture(autouse=True)
def hash_the_test_password_once(monkeypatch: pytest.MonkeyPatch) -> None:
    def cached(password: str) -> str:
        return _TEST_PASSWORD_HASH if password == TEST_PASSWORD else hash_password(password)

    monkeypatch.setattr(organizations_module, "hash_password", cached)


@dataclass
class RecordingArqRedis:
    """Stands in for arq's pool: serializes each job exactly as `ArqRedis.enqueue_job` does
    (arq's envelope, through our `job_serializer`) and keeps the bytes instead of storing them."""

    payloads: list[bytes] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)

    async def enqueue_job(
        self, function: str, *args: Any, _job_id: str | None = None, **kwargs: Any
    ) -> object:
        enqueue_time_ms = int(time.time() * 1000)
        self.payloads.append(
            serialize_job(function, args, kwargs, None, enqueue_time_ms, serializer=job_serializer)
        )
        self.job_ids.append(_job_id or "")
        return object()

    # What `BatchEnqueuer` (intake's one-round-trip enqueue) reads from an arq pool.
    expires_extra_ms = 86_400_000
    job_serializer = staticmethod(job_serializer)

    def register_script(self, _script: str) -> Any:
        async def run(keys: list[str], args: list[Any]) -> int:
            # ARGV: enqueue time, expiry, two key prefixes, then (job id, job bytes) pairs.
            pairs = args[4:]
            self.job_ids.extend(pairs[0::2])
            self.payloads.extend(pairs[1::2])
            return len(pairs) // 2

        return run

    async def aclose(self, close_connection_pool: bool = False) -> None:
        return None


@dataclass
class JobRecorder:
    redis: RecordingArqRedis
    dispatcher: ArqDispatcher

    @property
    def payloads(self) -> Sequence[bytes]:
        return self.redis.payloads

    def assert_no_secret(self) -> None:
        for payload in self.redis.payloads:
            for secret in CANARY_SECRETS:
                assert secret.encode() not in payload, f"a secret leaked into a job: {payload!r}"


@pytest.fixture
def jobs(app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]) -> Iterator[JobRecorder]:
    """The app's dispatcher is the production arq one, over a recording pool; every job
    payload it produced is searched for the canary secrets after the test."""
    redis = RecordingArqRedis()
    dispatcher = ArqDispatcher(redis, sessionmaker)  # type: ignore[arg-type]
    recorder = JobRecorder(redis=redis, dispatcher=dispatcher)
    previous = getattr(app.state, "dispatcher", None)
    app.state.dispatcher = recorder.dispatcher
    yield recorder
    app.state.dispatcher = previous
    recorder.assert_no_secret()


@dataclass(frozen=True)
class Seed:
    """Real ids of one organization's configured integration, for every path parameter."""

    organization_id: uuid.UUID
    integration_id: uuid.UUID
    trigger_id: uuid.UUID
    delivery_id: uuid.UUID
    interaction_id: str
    webhook_secret: str

    @property
    def path_values(self) -> dict[str, str]:
        return {
            "organization_id": str(self.organization_id),
            "integration_id": str(self.integration_id),
            "trigger_id": str(self.trigger_id),
            "delivery_id": str(self.delivery_id),
        }


async def seed_integration(
    client: httpx.AsyncClient,
    admin: Account,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Seed:
    """Steps 1-5 through the API, then one signed interaction that the trigger matches; its
    delivery is marked failed."""
    integration_id = uuid.UUID(await enabled_integration(client, admin))
    triggers = await client.get(
        f"/v1/integrations/{integration_id}/triggers", headers=admin.headers
    )
    assert triggers.status_code == 200, triggers.text
    trigger_id = uuid.UUID(triggers.json()["items"][0]["id"])
    secret = await organization_secret(sessionmaker, admin.organization.id)
    data = interaction()
    accepted = await post_event(client, admin.organization.id, secret, event(data))
    assert accepted.status_code == 202, accepted.text
    async with sessionmaker.begin() as session:
        delivery_id = await session.scalar(
            select(Delivery.id).where(Delivery.integration_id == integration_id)
        )
        assert delivery_id is not None
        # A permanent failure, so the delivery can be retried (and its retry enqueued).
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id)
            .values(status=DeliveryStatus.FAILED, last_error="Qualtrics answered 400")
        )
    return Seed(
        organization_id=admin.organization.id,
        integration_id=integration_id,
        trigger_id=trigger_id,
        delivery_id=delivery_id,
        interaction_id=data["id"],
        webhook_secret=secret,
    )


@pytest.fixture
async def seed(
    jobs: JobRecorder,
    client: httpx.AsyncClient,
    admin: Account,
    qualtrics: FakeQualtrics,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> Seed:
    """The seed, made with the recording dispatcher already in place."""
    return await seed_integration(client, admin, sessionmaker)
