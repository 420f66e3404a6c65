"""Group commit at intake: concurrent webhooks share a transaction, each answered only once it
is committed; duplicates inside one batch; one failing webhook does not fail its batch; a full
writer queue answers 503; and the signing-secret cache stays invisible to senders."""

import asyncio
import uuid
from collections.abc import Awaitable, Sequence
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.kit.crypto import SecretBox
from service.models import (
    Delivery,
    DeliveryStatus,
    Integration,
    Interaction,
    Trigger,
    WebhookReceipt,
    WebhookSecret,
)
from service.models.base import utc_now
from service.organizations.service import generate_webhook_secret
from service.testing.fake_qualtrics import FakeQualtrics
from service.webhooks import batching
from service.webhooks.batching import IntakeBatcher
from service.webhooks.service import IntakeService
from tests.conftest import TEST_FERNET_KEY, Account
from tests.helpers import assert_problem
from tests.setup.helpers import enabled_integration
from tests.webhooks.helpers import (
    RecordingDispatcher,
    count,
    event,
    interaction,
    organization_secret,
    post_event,
    signed_headers,
)


class CountingBatcher:
    """Records the size of every batch the app's writer stores."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, batcher: IntakeBatcher) -> None:
        self.sizes: list[int] = []
        store = batcher._store

        async def counted(batch: list[Any], **kwargs: Any) -> Any:
            self.sizes.append(len(batch))
            return await store(batch, **kwargs)

        monkeypatch.setattr(batcher, "_store", counted)


def intake(app: FastAPI) -> IntakeService:
    service: IntakeService = app.state.intake
    return service


def hold_writer(batcher: IntakeBatcher) -> asyncio.Event:
    """Make the batcher's writer wait, before storing each batch, until the returned event is
    set (`del batcher._store` restores it)."""
    gate = asyncio.Event()
    store = batcher._store

    async def held(batch: list[Any], **kwargs: Any) -> Any:
        await gate.wait()
        return await store(batch, **kwargs)

    batcher._store = held  # type: ignore[method-assign]
    return gate


async def in_one_batch(
    batcher: IntakeBatcher, posts: Sequence[Awaitable[httpx.Response]]
) -> list[httpx.Response]:
    """The answers to `posts`, sent while the writer is held so that they share one batch."""
    gate = hold_writer(batcher)
    try:
        pending = asyncio.gather(*posts)
        await asyncio.sleep(0.3)
        gate.set()
        return await pending
    finally:
        del batcher._store


async def test_concurrent_webhooks_share_commits_and_each_is_stored_before_its_202(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    qualtrics: FakeQualtrics,
    sessionmaker: async_sessionmaker[AsyncSession],
    dispatcher: RecordingDispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await enabled_integration(client, admin)
    secret = await organization_secret(sessionmaker, admin.organization.id)
    batches = CountingBatcher(monkeypatch, intake(app).batcher)
    ids = [f"call-{n}" for n in range(60)]

    async def send(external_id: str) -> tuple[httpx.Response, int]:
        response = await post_event(
            client, admin.organization.id, secret, event(interaction(id=external_id))
        )
        # The 202 is sent after the commit: its interaction is visible to a new session.
        async with sessionmaker() as session:
            stored = await session.scalar(
                select(func.count())
                .select_from(Interaction)
                .where(Interaction.external_id == external_id)
            )
        return response, int(stored or 0)

    answers = await asyncio.gather(*(send(external_id) for external_id in ids))

    assert [(response.status_code, stored) for response, stored in answers] == [(202, 1)] * 60
    assert all(
        response.json() == {"status": "accepted", "deliveries": 1} for response, _ in answers
    )
    assert sum(batches.sizes) == 60
    assert max(batches.sizes) > 1, batches.sizes  # some commits carried several webhooks
    assert await count(sessionmaker, Delivery) == 60
    # Every pending delivery was enqueued once, with the request id of its own webhook.
    queued = [delivery for batch in dispatcher.batches for delivery in batch]
    assert len({delivery.delivery_id for delivery in queued}) == len(queued) == 60
    request_ids = {answer.headers["x-request-id"] for answer, _ in answers}
    assert {delivery.request_id for delivery in queued} == request_ids


async def test_copies_inside_one_batch_are_duplicates_of_the_first(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    qualtrics: FakeQualtrics,
    sessionmaker: async_sessionmaker[AsyncSession],
    dispatcher: RecordingDispatcher,
) -> None:
    await enabled_integration(client, admin)
    secret = await organization_secret(sessionmaker, admin.organization.id)
    url = f"/v1/webhooks/{admin.organization.id}/interactions"
    same_webhook = event(interaction())
    same_webhook_headers = signed_headers(secret, same_webhook, webhook_id="msg_twice")
    data = interaction()
    answers = await in_one_batch(
        intake(app).batcher,
        [
            *(
                client.post(url, content=same_webhook, headers=same_webhook_headers)
                for _ in range(3)
            ),
            *(post_event(client, admin.organization.id, secret, event(data)) for _ in range(3)),
        ],
    )
    statuses = sorted((answer.status_code, answer.json()["status"]) for answer in answers)
    assert statuses == [(200, "duplicate")] * 4 + [(202, "accepted")] * 2
    assert await count(sessionmaker, Interaction) == 2
    assert await count(sessionmaker, Delivery) == 2
    assert await count(sessionmaker, WebhookReceipt) == 4  # msg_twice once, three other ids


async def test_one_failing_webhook_does_not_fail_its_batch(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    qualtrics: FakeQualtrics,
    sessionmaker: async_sessionmaker[AsyncSession],
    dispatcher: RecordingDispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await enabled_integration(client, admin)
    secret = await organization_secret(sessionmaker, admin.organization.id)
    values = batching.interaction_values

    def broken_for_one(event: Any) -> dict[str, Any]:
        if event.data.id == "call-broken":
            raise RuntimeError("a defect that affects this one interaction")
        return values(event)

    monkeypatch.setattr(batching, "interaction_values", broken_for_one)
    ids = [f"call-{n}" for n in range(20)] + ["call-broken"]
    answers = await asyncio.gather(
        *(
            post_event(client, admin.organization.id, secret, event(interaction(id=external_id)))
            for external_id in ids
        ),
        return_exceptions=True,
    )
    by_id = dict(zip(ids, answers, strict=True))
    # The test client re-raises what the app did not handle (a 500 for a real client).
    assert isinstance(by_id.pop("call-broken"), RuntimeError)
    assert {answer.status_code for answer in by_id.values()} == {202}  # type: ignore[union-attr]
    assert await count(sessionmaker, Interaction) == 20
    # The failed webhook stored nothing, not even its receipt: the sender's retry is accepted.
    monkeypatch.setattr(batching, "interaction_values", values)
    retried = await post_event(
        client, admin.organization.id, secret, event(interaction(id="call-broken"))
    )
    assert retried.status_code == 202


async def test_a_full_writer_queue_answers_503_and_stores_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    qualtrics: FakeQualtrics,
    sessionmaker: async_sessionmaker[AsyncSession],
    dispatcher: RecordingDispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await enabled_integration(client, admin)
    secret = await organization_secret(sessionmaker, admin.organization.id)
    # A writer that takes two waiting webhooks at most, and is stalled.
    batcher = IntakeBatcher(sessionmaker, lambda: dispatcher, max_waiting=2)
    batcher.start()
    gate = hold_writer(batcher)
    monkeypatch.setattr(intake(app), "batcher", batcher)

    def send() -> asyncio.Task[httpx.Response]:
        body = event(interaction())
        return asyncio.create_task(post_event(client, admin.organization.id, secret, body))

    try:
        # One in the writer's hands, two waiting: the fourth finds the queue full.
        waiting = [send()]
        await asyncio.sleep(0.2)
        waiting += [send(), send()]
        await asyncio.sleep(0.2)
        refused = await post_event(client, admin.organization.id, secret, event(interaction()))
        assert_problem(refused, 503)
        assert refused.headers["retry-after"] == "1"
        gate.set()
        assert [answer.status_code for answer in await asyncio.gather(*waiting)] == [202] * 3
    finally:
        gate.set()
        await batcher.aclose()
    assert await count(sessionmaker, Interaction) == 3


class TestSigningSecretCache:
    async def test_a_secret_rotated_in_elsewhere_verifies_at_once(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin: Account,
        qualtrics: FakeQualtrics,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: RecordingDispatcher,
    ) -> None:
        await enabled_integration(client, admin)
        old = await organization_secret(sessionmaker, admin.organization.id)
        first = await post_event(client, admin.organization.id, old, event(interaction()))
        assert first.status_code == 202  # the old secret is now cached
        # Another api process rotates: this process's cache does not know the new secret.
        new = generate_webhook_secret()
        async with sessionmaker.begin() as session:
            session.add(
                WebhookSecret(
                    organization_id=admin.organization.id,
                    secret_encrypted=SecretBox([TEST_FERNET_KEY]).encrypt(new),
                )
            )
        await asyncio.sleep(1.1)  # past the refresh guard
        answer = await post_event(client, admin.organization.id, new, event(interaction()))
        assert answer.status_code == 202, answer.text

    async def test_an_expired_secret_stops_verifying_though_cached(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin: Account,
        qualtrics: FakeQualtrics,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: RecordingDispatcher,
    ) -> None:
        await enabled_integration(client, admin)
        secret = await organization_secret(sessionmaker, admin.organization.id)
        assert (
            await post_event(client, admin.organization.id, secret, event(interaction()))
        ).status_code == 202
        expiry = utc_now() + timedelta(seconds=1)
        async with sessionmaker.begin() as session:
            await session.execute(
                update(WebhookSecret)
                .where(WebhookSecret.organization_id == admin.organization.id)
                .values(expires_at=expiry)
            )
        intake(app).forget_secrets(admin.organization.id)  # re-read, with the expiry
        assert (
            await post_event(client, admin.organization.id, secret, event(interaction()))
        ).status_code == 202
        await asyncio.sleep(1.2)
        late = await post_event(client, admin.organization.id, secret, event(interaction()))
        assert_problem(late, 401)

    async def test_an_unknown_organization_is_not_remembered(
        self,
        app: FastAPI,
        client: httpx.AsyncClient,
        admin: Account,
        qualtrics: FakeQualtrics,
        sessionmaker: async_sessionmaker[AsyncSession],
        dispatcher: RecordingDispatcher,
    ) -> None:
        unknown = uuid.uuid4()
        body = event(interaction())
        refused = await client.post(
            f"/v1/webhooks/{unknown}/interactions",
            content=body,
            headers=signed_headers(generate_webhook_secret(), body),
        )
        assert_problem(refused, 401)
        assert unknown not in intake(app)._secrets._entries


async def test_batched_rows_read_back_as_the_models_define_them(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    qualtrics: FakeQualtrics,
    sessionmaker: async_sessionmaker[AsyncSession],
    dispatcher: RecordingDispatcher,
) -> None:
    """Both insert paths (PostgreSQL's unnest arrays, SQLite's executemany) write every column."""
    from service.interactions.schemas import Interaction as InteractionPayload
    from service.models import DeliveryStatus

    integration_id = await enabled_integration(client, admin)
    secret = await organization_secret(sessionmaker, admin.organization.id)
    data = interaction(id="call-columns")
    body = event(data)
    answer = await post_event(client, admin.organization.id, secret, body)
    assert answer.status_code == 202
    async with sessionmaker() as session:
        stored = (await session.scalars(select(Interaction))).one()
        delivery = (await session.scalars(select(Delivery))).one()
    expected = InteractionPayload.model_validate(data).model_dump(mode="json")
    assert stored.payload == expected
    assert stored.external_id == "call-columns"
    assert stored.organization_id == admin.organization.id
    assert stored.revision == 1
    assert stored.created_at == stored.updated_at
    assert stored.started_at == InteractionPayload.model_validate(data).started_at
    assert stored.event_timestamp.tzinfo is not None
    assert str(delivery.integration_id) == integration_id
    assert delivery.interaction_id == stored.id
    assert delivery.organization_id == admin.organization.id
    assert delivery.status is DeliveryStatus.PENDING
    assert delivery.trigger_id is not None
    assert delivery.trigger_name
    assert delivery.attempts == 0
    assert delivery.next_attempt_at == delivery.created_at == delivery.updated_at
    assert delivery.last_enqueued_at == delivery.created_at  # enqueued with its batch
    assert delivery.delivered_at is None
    assert delivery.response_id is None
    assert delivery.last_error is None
    assert delivery.newer_revision_after_delivery is False
    assert delivery.interaction_revision == 1


async def test_each_batch_is_planned_with_the_state_its_insert_sees(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    qualtrics: FakeQualtrics,
    sessionmaker: async_sessionmaker[AsyncSession],
    dispatcher: RecordingDispatcher,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An integration changed behind this process's back (by another api process, or the
    worker invalidating it) between two batches: the second batch is planned with the new
    state. On PostgreSQL the writer keeps the state it read and its statement finds it stale,
    so it reads it again once, and stores nothing planned with the old one."""
    integration_id = uuid.UUID(await enabled_integration(client, admin))
    secret = await organization_secret(sessionmaker, admin.organization.id)
    states = intake(app).batcher._planning_states
    reads: list[uuid.UUID] = []
    read = states._read

    async def counted(connection: Any, organization_id: uuid.UUID) -> Any:
        reads.append(organization_id)
        return await read(connection, organization_id)

    monkeypatch.setattr(states, "_read", counted)

    first = await post_event(client, admin.organization.id, secret, event(interaction()))
    again = await post_event(client, admin.organization.id, secret, event(interaction()))
    async with sessionmaker.begin() as session:
        await session.execute(
            update(Integration).where(Integration.id == integration_id).values(enabled=False)
        )
    after = await post_event(client, admin.organization.id, secret, event(interaction()))

    assert [first.status_code, again.status_code, after.status_code] == [202] * 3
    async with sessionmaker() as session:
        statuses = (
            await session.scalars(select(Delivery.status).order_by(Delivery.created_at))
        ).all()
    assert statuses == [DeliveryStatus.PENDING, DeliveryStatus.PENDING, DeliveryStatus.HELD]
    if app.state.engine.dialect.name == "postgresql":
        # Read for the first batch, kept for the second, read again when found stale.
        assert reads == [admin.organization.id] * 2
    else:
        assert reads == []  # SQLite reads the state in each batch's transaction


async def test_one_batch_gives_each_delivery_its_own_integration_trigger_and_status(
    app: FastAPI,
    client: httpx.AsyncClient,
    admin: Account,
    qualtrics: FakeQualtrics,
    sessionmaker: async_sessionmaker[AsyncSession],
    dispatcher: RecordingDispatcher,
) -> None:
    """Deliveries of one batch share their (integration, trigger) pairs (service.webhooks.bulk
    sends each pair once): with two integrations, one enabled and one held, in a single
    batch, every delivery still carries its own integration's trigger and status."""
    sending = uuid.UUID(await enabled_integration(client, admin))
    holding = uuid.UUID(await enabled_integration(client, admin, "CSAT"))
    disabled = await client.post(f"/v1/integrations/{holding}/disable", headers=admin.headers)
    assert disabled.status_code == 200
    secret = await organization_secret(sessionmaker, admin.organization.id)
    answers = await in_one_batch(
        intake(app).batcher,
        [post_event(client, admin.organization.id, secret, event(interaction())) for _ in range(8)],
    )

    assert [answer.json() for answer in answers] == [{"status": "accepted", "deliveries": 2}] * 8
    async with sessionmaker() as session:
        deliveries = (await session.scalars(select(Delivery))).all()
        triggers = (await session.scalars(select(Trigger))).all()
    trigger_names = {trigger.integration_id: trigger.name for trigger in triggers}
    trigger_ids = {trigger.integration_id: trigger.id for trigger in triggers}
    assert len(deliveries) == 16
    assert len({delivery.interaction_id for delivery in deliveries}) == 8
    for delivery in deliveries:
        assert delivery.organization_id == admin.organization.id
        assert delivery.trigger_id == trigger_ids[delivery.integration_id]
        assert delivery.trigger_name == trigger_names[delivery.integration_id]
        if delivery.integration_id == sending:
            assert delivery.status is DeliveryStatus.PENDING
            assert delivery.last_enqueued_at == delivery.created_at
        else:
            assert delivery.integration_id == holding
            assert delivery.status is DeliveryStatus.HELD
            assert delivery.last_enqueued_at is None
    queued = {queued.delivery_id for batch in dispatcher.batches for queued in batch}
    assert queued == {delivery.id for delivery in deliveries if delivery.integration_id == sending}
