"""`send_delivery` against the in-process fake Qualtrics, on PostgreSQL and SQLite (design §8)."""

import asyncio
import dataclasses
import logging
import uuid
from datetime import timedelta
from typing import cast

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.catalog.service import catalog as catalog_service
from service.config import Settings
from service.data_fields.encoding import encode_response
from service.data_fields.service import saved_fields
from service.delivery.backoff import RetryPolicy
from service.delivery.ratelimit import LocalRateLimiter, RateLimitConfig, RateLimitTimeout
from service.delivery.sender import DeliveryContext, Outcome, send_delivery
from service.interactions.schemas import INTERACTION_EXAMPLE
from service.interactions.schemas import Interaction as InteractionPayload
from service.models import (
    AuditLogEntry,
    Delivery,
    DeliveryStatus,
    Integration,
    IntegrationHealth,
    Interaction,
    QualtricsProject,
)
from service.qualtrics.errors import MAX_SNIPPET_CHARS
from service.testing.fake_qualtrics import FakeQualtrics
from tests.conftest import QUALTRICS_CLIENT_ID, QUALTRICS_CLIENT_SECRET, Account
from tests.delivery.conftest import (
    RESPONSES,
    TRIGGER_NAME,
    Clock,
    DeliveryFactory,
    Ready,
    RecordingLimiter,
    load_attempts,
    load_delivery,
)
from tests.setup.helpers import CATALOG

Sessionmaker = async_sessionmaker[AsyncSession]
BRAND = "acme"  # the fake account's brand id, which keys the limiter


async def expected_values(
    sessionmaker: Sessionmaker, settings: Settings, ready: Ready, payload: dict[str, object]
) -> dict[str, object]:
    """What the encoder makes of `payload` for this integration, computed independently."""
    async with sessionmaker() as session:
        integration = await session.get(Integration, ready.integration_id)
        project = await session.get(QualtricsProject, ready.integration_id)
        assert integration is not None
        assert project is not None
        catalog = await catalog_service.get_document(session, ready.organization_id)
    encoded = encode_response(
        InteractionPayload.model_validate(payload),
        saved_fields(integration),
        project.field_map,
        catalog,
        trigger_name=TRIGGER_NAME,
        creovai_app_url=settings.creovai_app_url,
    )
    return encoded.values


def within(actual: timedelta, base: timedelta, jitter: float = 0.2) -> bool:
    return base * (1 - jitter) <= actual <= base * (1 + jitter)


class TestDelivering:
    async def test_delivers_the_encoded_values_once_with_the_idempotency_key(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
        settings: Settings,
        limiter: RecordingLimiter,
        clock: Clock,
    ) -> None:
        delivery_id = await make_delivery()

        assert await send_delivery(delivery_context, delivery_id) is Outcome.DELIVERED

        [stored] = qualtrics.responses(ready.survey_id)
        payload = dict(INTERACTION_EXAMPLE)
        assert stored.submitted == await expected_values(sessionmaker, settings, ready, payload)
        assert stored.submitted["creovai_interaction_id"] == INTERACTION_EXAMPLE["id"]
        assert stored.submitted["creovai_trigger"] == TRIGGER_NAME
        assert stored.submitted["startDate"] == "2026-11-26T08:15:00Z"
        assert stored.idempotency_key == str(delivery_id)
        assert limiter.slots == [BRAND]

        delivery = await load_delivery(sessionmaker, delivery_id)
        assert delivery.status == DeliveryStatus.DELIVERED
        assert delivery.delivered_at == clock()
        assert delivery.response_id == stored.response_id
        assert delivery.attempts == 1
        assert delivery.next_attempt_at is None
        assert delivery.last_error is None
        [attempt] = await load_attempts(sessionmaker, delivery_id)
        assert (attempt.outcome, attempt.status_code, attempt.counted) == ("delivered", 200, True)
        assert attempt.error_class is None
        assert attempt.started_at == clock()

    async def test_a_delivered_delivery_is_never_sent_again(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
        clock: Clock,
    ) -> None:
        delivery_id = await make_delivery()
        assert await send_delivery(delivery_context, delivery_id) is Outcome.DELIVERED
        requests = qualtrics.stats.total
        clock.advance(3600)

        assert await send_delivery(delivery_context, delivery_id) is Outcome.SKIPPED

        assert qualtrics.stats.total == requests
        assert len(qualtrics.responses(ready.survey_id)) == 1
        assert len(await load_attempts(sessionmaker, delivery_id)) == 1

    async def test_what_is_not_due_or_unknown_is_skipped(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
        clock: Clock,
    ) -> None:
        later = await make_delivery(next_attempt_at=clock() + timedelta(seconds=30))

        assert await send_delivery(delivery_context, later) is Outcome.SKIPPED
        assert await send_delivery(delivery_context, uuid.uuid4()) is Outcome.SKIPPED

        assert qualtrics.responses(ready.survey_id) == []
        delivery = await load_delivery(sessionmaker, later)
        assert (delivery.status, delivery.next_attempt_at) == (
            DeliveryStatus.PENDING,
            clock() + timedelta(seconds=30),
        )
        clock.advance(30)
        assert await send_delivery(delivery_context, later) is Outcome.DELIVERED

    async def test_concurrent_runs_send_once(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
    ) -> None:
        delivery_id = await make_delivery()

        outcomes = await asyncio.gather(
            *(send_delivery(delivery_context, delivery_id) for _ in range(5))
        )

        assert sorted(outcomes) == sorted([Outcome.DELIVERED] + [Outcome.SKIPPED] * 4)
        assert len(qualtrics.responses(ready.survey_id)) == 1
        assert len(await load_attempts(sessionmaker, delivery_id)) == 1

    async def test_a_crashed_run_keeps_its_claim_until_the_lease_expires(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
        limiter: RecordingLimiter,
        clock: Clock,
    ) -> None:
        delivery_id = await make_delivery()
        # The job is cancelled mid-send (arq's timeout, a shutdown): nothing gets recorded.
        limiter.fail_with = asyncio.CancelledError()

        with pytest.raises(asyncio.CancelledError):
            await send_delivery(delivery_context, delivery_id)

        claimed = await load_delivery(sessionmaker, delivery_id)
        assert claimed.status == DeliveryStatus.PENDING
        assert claimed.next_attempt_at == clock() + delivery_context.lease_duration
        assert claimed.attempts == 0
        limiter.fail_with = None
        # A redelivered job or a sweeper re-enqueue while the claim holds does nothing...
        clock.advance(delivery_context.lease_duration.total_seconds() - 1)
        assert await send_delivery(delivery_context, delivery_id) is Outcome.SKIPPED
        # ...and once the lease ran out, the next run sends it.
        clock.advance(1)
        assert await send_delivery(delivery_context, delivery_id) is Outcome.DELIVERED
        assert len(qualtrics.responses(ready.survey_id)) == 1

    async def test_the_newest_stored_revision_is_sent(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
        settings: Settings,
    ) -> None:
        newer = {**INTERACTION_EXAMPLE, "scores": [{"name": "TEI", "value": 9.1}]}
        delivery_id = await make_delivery(payload=newer, revision=3)

        assert await send_delivery(delivery_context, delivery_id) is Outcome.DELIVERED

        [stored] = qualtrics.responses(ready.survey_id)
        assert stored.submitted == await expected_values(sessionmaker, settings, ready, newer)
        delivery = await load_delivery(sessionmaker, delivery_id)
        assert delivery.interaction_revision == 3
        assert delivery.newer_revision_after_delivery is False

    async def test_an_update_that_arrives_while_sending_is_flagged(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        sessionmaker: Sessionmaker,
        limiter: RecordingLimiter,
    ) -> None:
        delivery_id = await make_delivery()
        delivery = await load_delivery(sessionmaker, delivery_id)

        async def interaction_updated() -> None:
            async with sessionmaker.begin() as session:
                await session.execute(
                    update(Interaction)
                    .where(Interaction.id == delivery.interaction_id)
                    .values(revision=2)
                )

        limiter.on_slot = interaction_updated

        assert await send_delivery(delivery_context, delivery_id) is Outcome.DELIVERED

        delivered = await load_delivery(sessionmaker, delivery_id)
        assert delivered.interaction_revision == 1  # what was sent
        assert delivered.newer_revision_after_delivery is True

    async def test_compiled_plans_are_reused_until_the_configuration_changes(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        client: httpx.AsyncClient,
        admin: Account,
    ) -> None:
        plans = delivery_context.plans
        assert await send_delivery(delivery_context, await make_delivery()) is Outcome.DELIVERED
        assert await send_delivery(delivery_context, await make_delivery()) is Outcome.DELIVERED
        assert (plans.misses, plans.hits, len(plans)) == (1, 1, 1)

        categories = cast("list[dict[str, str]]", CATALOG["categories"])
        changed = {**CATALOG, "categories": [*categories, {"name": "Praise"}]}
        response = await client.put("/v1/catalog", json=changed, headers=admin.headers)
        assert response.status_code == 200, response.text
        assert await send_delivery(delivery_context, await make_delivery()) is Outcome.DELIVERED

        assert (plans.misses, plans.hits, len(plans)) == (2, 1, 1)


class TestRetries:
    async def test_a_503_then_success(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
        clock: Clock,
    ) -> None:
        delivery_id = await make_delivery()
        qualtrics.inject_fault("status", status=503, path_pattern=RESPONSES)

        assert await send_delivery(delivery_context, delivery_id) is Outcome.RETRY_SCHEDULED

        delivery = await load_delivery(sessionmaker, delivery_id)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
        assert delivery.next_attempt_at is not None
        assert within(delivery.next_attempt_at - clock(), timedelta(seconds=10))
        assert delivery.last_error is not None
        assert "503" in delivery.last_error
        [failed] = await load_attempts(sessionmaker, delivery_id)
        assert (failed.outcome, failed.status_code, failed.error_class, failed.counted) == (
            "retry_scheduled",
            503,
            "QualtricsServerError",
            True,
        )
        assert qualtrics.responses(ready.survey_id) == []

        assert await send_delivery(delivery_context, delivery_id) is Outcome.SKIPPED  # not due
        clock.advance(12)
        assert await send_delivery(delivery_context, delivery_id) is Outcome.DELIVERED

        delivery = await load_delivery(sessionmaker, delivery_id)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 2)
        assert len(qualtrics.responses(ready.survey_id)) == 1
        assert [a.outcome for a in await load_attempts(sessionmaker, delivery_id)] == [
            "retry_scheduled",
            "delivered",
        ]

    async def test_a_reset_after_qualtrics_stored_it_is_retried_without_a_duplicate(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
        clock: Clock,
    ) -> None:
        delivery_id = await make_delivery()
        # The response is created, then the connection drops: an unknown outcome.
        qualtrics.inject_fault("reset", phase="after", path_pattern=RESPONSES)

        assert await send_delivery(delivery_context, delivery_id) is Outcome.RETRY_SCHEDULED

        [attempt] = await load_attempts(sessionmaker, delivery_id)
        assert (attempt.error_class, attempt.status_code) == ("QualtricsTransportError", None)
        clock.advance(12)
        assert await send_delivery(delivery_context, delivery_id) is Outcome.DELIVERED
        [stored] = qualtrics.responses(ready.survey_id)  # the Idempotency-Key deduplicated it
        assert (await load_delivery(sessionmaker, delivery_id)).response_id == stored.response_id

    async def test_a_hung_request_times_out_within_the_budget(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
    ) -> None:
        context = dataclasses.replace(delivery_context, lease=timedelta(seconds=1))
        assert context.send_budget == timedelta(seconds=0.75)
        delivery_id = await make_delivery()
        qualtrics.inject_fault("hang", seconds=30, path_pattern=RESPONSES)

        assert await send_delivery(context, delivery_id) is Outcome.RETRY_SCHEDULED

        [attempt] = await load_attempts(sessionmaker, delivery_id)
        assert attempt.error_class == "QualtricsTimeout"
        assert 700 <= attempt.duration_ms < 5000
        assert (await load_delivery(sessionmaker, delivery_id)).attempts == 1
        assert qualtrics.responses(ready.survey_id) == []

    async def test_retries_end_dead_after_max_attempts(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        sessionmaker: Sessionmaker,
        clock: Clock,
    ) -> None:
        context = dataclasses.replace(delivery_context, policy=RetryPolicy(max_attempts=3))
        delivery_id = await make_delivery()
        qualtrics.inject_fault("status", status=502, path_pattern=RESPONSES, count=None)

        outcomes = []
        for _ in range(3):
            outcomes.append(await send_delivery(context, delivery_id))
            clock.advance(3600)
        assert await send_delivery(context, delivery_id) is Outcome.SKIPPED

        assert outcomes == [Outcome.RETRY_SCHEDULED, Outcome.RETRY_SCHEDULED, Outcome.DEAD]
        delivery = await load_delivery(sessionmaker, delivery_id)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.DEAD, 3)
        assert delivery.next_attempt_at is None
        assert delivery.last_error is not None
        attempts = await load_attempts(sessionmaker, delivery_id)
        assert [a.outcome for a in attempts] == ["retry_scheduled", "retry_scheduled", "dead"]
        assert all(a.status_code == 502 and a.counted for a in attempts)

    async def test_an_unexpected_error_counts_as_an_attempt(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        sessionmaker: Sessionmaker,
        limiter: RecordingLimiter,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        delivery_id = await make_delivery()
        limiter.fail_with = RuntimeError("a bug nobody foresaw")

        assert await send_delivery(delivery_context, delivery_id) is Outcome.RETRY_SCHEDULED

        delivery = await load_delivery(sessionmaker, delivery_id)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 1)
        assert delivery.last_error == "RuntimeError: a bug nobody foresaw"
        [attempt] = await load_attempts(sessionmaker, delivery_id)
        assert (attempt.error_class, attempt.counted) == ("RuntimeError", True)
        assert "unexpected RuntimeError" in caplog.text


class TestRateLimits:
    @pytest.mark.parametrize(
        ("retry_after", "wait"),
        [(30, 30.0), (None, 60.0), (3600, 120.0), (0, 1.0)],
        ids=["retry-after", "default-60s", "clamped-to-2x", "at-least-1s"],
    )
    async def test_a_429_waits_without_spending_an_attempt(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        sessionmaker: Sessionmaker,
        limiter: RecordingLimiter,
        clock: Clock,
        retry_after: int | None,
        wait: float,
    ) -> None:
        delivery_id = await make_delivery()
        qualtrics.inject_fault(
            "status", status=429, retry_after=retry_after, path_pattern=RESPONSES
        )

        assert await send_delivery(delivery_context, delivery_id) is Outcome.RATE_LIMITED

        assert limiter.penalties == [(BRAND, wait)]
        delivery = await load_delivery(sessionmaker, delivery_id)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 0)
        assert delivery.next_attempt_at is not None
        delay = delivery.next_attempt_at - clock()
        assert within(delay, timedelta(seconds=wait))
        if retry_after is not None:
            assert delay >= timedelta(seconds=wait)  # never before Qualtrics said
        [attempt] = await load_attempts(sessionmaker, delivery_id)
        assert (attempt.outcome, attempt.status_code, attempt.counted) == (
            "rate_limited",
            429,
            False,
        )
        assert attempt.error_class == "QualtricsRateLimited"

    async def test_a_429_storm_spends_no_attempts(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
        limiter: RecordingLimiter,
        clock: Clock,
    ) -> None:
        context = dataclasses.replace(delivery_context, policy=RetryPolicy(max_attempts=2))
        delivery_id = await make_delivery()
        qualtrics.inject_fault(
            "status", status=429, retry_after=5, path_pattern=RESPONSES, count=20
        )

        for _ in range(20):
            assert await send_delivery(context, delivery_id) is Outcome.RATE_LIMITED
            clock.advance(10)
        assert await send_delivery(context, delivery_id) is Outcome.DELIVERED

        delivery = await load_delivery(sessionmaker, delivery_id)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)
        attempts = await load_attempts(sessionmaker, delivery_id)
        assert [a.counted for a in attempts] == [False] * 20 + [True]
        assert len(limiter.penalties) == 20
        assert len(qualtrics.responses(ready.survey_id)) == 1

    async def test_no_limiter_slot_in_time_reschedules_without_an_attempt(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
        limiter: RecordingLimiter,
        clock: Clock,
    ) -> None:
        delivery_id = await make_delivery()
        limiter.fail_with = RateLimitTimeout(key=BRAND, retry_after=42.0)
        requests = qualtrics.stats.total

        assert await send_delivery(delivery_context, delivery_id) is Outcome.RATE_LIMITED

        assert qualtrics.stats.total == requests  # nothing was sent
        delivery = await load_delivery(sessionmaker, delivery_id)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.PENDING, 0)
        assert delivery.next_attempt_at is not None
        assert within(delivery.next_attempt_at - clock(), timedelta(seconds=42))
        assert await load_attempts(sessionmaker, delivery_id) == []
        assert qualtrics.responses(ready.survey_id) == []

    async def test_with_the_real_limiter_a_429_cools_the_whole_brand_down(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
        clock: Clock,
    ) -> None:
        limiter = LocalRateLimiter(RateLimitConfig(max_wait=1.0))
        context = dataclasses.replace(delivery_context, limiter=limiter)
        first, second = await make_delivery(), await make_delivery()
        qualtrics.inject_fault("status", status=429, retry_after=30, path_pattern=RESPONSES)

        assert await send_delivery(context, first) is Outcome.RATE_LIMITED
        requests = qualtrics.stats.total
        # Another delivery to the same brand waits out the cool-down instead of sending.
        assert await send_delivery(context, second) is Outcome.RATE_LIMITED

        assert qualtrics.stats.total == requests
        delivery = await load_delivery(sessionmaker, second)
        assert delivery.attempts == 0
        assert delivery.next_attempt_at is not None
        assert within(delivery.next_attempt_at - clock(), timedelta(seconds=30), jitter=0.25)
        assert await load_attempts(sessionmaker, second) == []


class TestInvalidation:
    async def test_rejected_credentials_invalidate_and_hold_every_pending_delivery(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
        clock: Clock,
    ) -> None:
        delivery_id = await make_delivery()
        other_id = await make_delivery(next_attempt_at=clock() + timedelta(minutes=5))
        qualtrics.revoke_credentials(QUALTRICS_CLIENT_ID)

        assert await send_delivery(delivery_context, delivery_id) is Outcome.HELD

        async with sessionmaker() as session:
            integration = await session.get(Integration, ready.integration_id)
            assert integration is not None
            assert integration.enabled is False
            assert integration.health == IntegrationHealth.INVALID
            assert "rejected the credentials" in (integration.health_reason or "")
            audit = (
                await session.scalars(
                    select(AuditLogEntry).where(
                        AuditLogEntry.action == "integration.invalidated",
                        AuditLogEntry.integration_id == ready.integration_id,
                    )
                )
            ).all()
            assert [entry.actor for entry in audit] == ["worker"]
        for held in (delivery_id, other_id):
            assert (await load_delivery(sessionmaker, held)).status == DeliveryStatus.HELD
        [attempt] = await load_attempts(sessionmaker, delivery_id)
        assert (attempt.outcome, attempt.error_class, attempt.counted) == (
            "held",
            "QualtricsAuthRejected",
            True,
        )
        assert qualtrics.responses(ready.survey_id) == []
        assert await send_delivery(delivery_context, delivery_id) is Outcome.SKIPPED

    async def test_a_deleted_survey_invalidates_and_holds(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
    ) -> None:
        delivery_id = await make_delivery()
        other_id = await make_delivery()
        qualtrics.delete_survey(ready.survey_id)

        assert await send_delivery(delivery_context, delivery_id) is Outcome.HELD

        async with sessionmaker() as session:
            integration = await session.get(Integration, ready.integration_id)
            assert integration is not None
            assert (integration.enabled, integration.health) == (False, IntegrationHealth.INVALID)
            assert f"survey {ready.survey_id} was deleted in Qualtrics" in (
                integration.health_reason or ""
            )
        for held in (delivery_id, other_id):
            assert (await load_delivery(sessionmaker, held)).status == DeliveryStatus.HELD
        [attempt] = await load_attempts(sessionmaker, delivery_id)
        assert (attempt.status_code, attempt.error_class) == (404, "QualtricsNotFound")
        # The other delivery's run finds it held and sends nothing.
        assert await send_delivery(delivery_context, other_id) is Outcome.SKIPPED

    async def test_a_disabled_integration_holds_without_sending(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
        client: httpx.AsyncClient,
        admin: Account,
    ) -> None:
        delivery_id = await make_delivery()
        disabled = await client.post(
            f"/v1/integrations/{ready.integration_id}/disable", headers=admin.headers
        )
        assert disabled.status_code == 200, disabled.text
        requests = qualtrics.stats.total

        assert await send_delivery(delivery_context, delivery_id) is Outcome.HELD

        assert qualtrics.stats.total == requests
        delivery = await load_delivery(sessionmaker, delivery_id)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.HELD, 0)
        assert await load_attempts(sessionmaker, delivery_id) == []


class TestFailures:
    async def test_a_400_fails_with_the_reason(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
    ) -> None:
        # A corrupt field map: the first question now points at one the survey does not have.
        async with sessionmaker.begin() as session:
            project = await session.get(QualtricsProject, ready.integration_id)
            assert project is not None
            field_map = {key: dict(entry) for key, entry in project.field_map.items()}
            key = next(k for k, entry in field_map.items() if entry.get("kind") == "question")
            field_map[key]["question_id"] = "QID999"
            project.field_map = field_map
        delivery_id = await make_delivery()

        assert await send_delivery(delivery_context, delivery_id) is Outcome.FAILED

        delivery = await load_delivery(sessionmaker, delivery_id)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
        assert delivery.next_attempt_at is None
        assert delivery.last_error is not None
        assert "400" in delivery.last_error
        assert "QID999" in delivery.last_error
        [attempt] = await load_attempts(sessionmaker, delivery_id)
        assert (attempt.outcome, attempt.status_code, attempt.error_class) == (
            "failed",
            400,
            "QualtricsBadRequest",
        )
        assert attempt.response_body is not None
        assert "QID999" in attempt.response_body
        assert qualtrics.responses(ready.survey_id) == []

    async def test_a_redirect_fails_and_is_never_followed(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
    ) -> None:
        delivery_id = await make_delivery()
        location = f"http://fake-qualtrics.test/iad1/API/v3/surveys/{ready.survey_id}/responses"
        qualtrics.inject_fault("redirect", location=location, path_pattern=RESPONSES)
        requests = qualtrics.stats.total

        assert await send_delivery(delivery_context, delivery_id) is Outcome.FAILED

        assert qualtrics.stats.total == requests + 1  # the redirect itself, nothing after it
        assert qualtrics.responses(ready.survey_id) == []
        delivery = await load_delivery(sessionmaker, delivery_id)
        assert delivery.status == DeliveryStatus.FAILED
        assert "redirect" in (delivery.last_error or "")
        [attempt] = await load_attempts(sessionmaker, delivery_id)
        assert (attempt.status_code, attempt.error_class) == (302, "QualtricsProtocolError")

    async def test_a_poison_interaction_fails_without_sending(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        sessionmaker: Sessionmaker,
    ) -> None:
        # Stored before a rule tightened, say: it no longer validates.
        poison = {**INTERACTION_EXAMPLE, "channel": "carrier pigeon"}
        delivery_id = await make_delivery(payload=poison)
        requests = qualtrics.stats.total

        assert await send_delivery(delivery_context, delivery_id) is Outcome.FAILED

        assert qualtrics.stats.total == requests
        delivery = await load_delivery(sessionmaker, delivery_id)
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 0)
        assert delivery.last_error is not None
        assert delivery.last_error.startswith("The stored interaction no longer validates: channel")
        assert "carrier pigeon" not in delivery.last_error  # the input is not echoed
        assert await load_attempts(sessionmaker, delivery_id) == []
        assert await send_delivery(delivery_context, delivery_id) is Outcome.SKIPPED

    async def test_data_fields_that_no_longer_validate_fail_without_sending(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        sessionmaker: Sessionmaker,
    ) -> None:
        async with sessionmaker.begin() as session:
            integration = await session.get(Integration, ready.integration_id)
            assert integration is not None
            integration.data_fields = [{"source": "horoscope", "key": "sign"}]
        delivery_id = await make_delivery()

        assert await send_delivery(delivery_context, delivery_id) is Outcome.FAILED

        assert qualtrics.responses(ready.survey_id) == []
        delivery = await load_delivery(sessionmaker, delivery_id)
        assert delivery.status == DeliveryStatus.FAILED
        assert (delivery.last_error or "").startswith(
            "The integration's data fields no longer validate: source"
        )

    async def test_a_missing_project_fails(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        ready: Ready,
        sessionmaker: Sessionmaker,
    ) -> None:
        delivery_id = await make_delivery()
        async with sessionmaker.begin() as session:
            project = await session.get(QualtricsProject, ready.integration_id)
            await session.delete(project)

        assert await send_delivery(delivery_context, delivery_id) is Outcome.FAILED

        delivery = await load_delivery(sessionmaker, delivery_id)
        assert delivery.status == DeliveryStatus.FAILED
        assert delivery.last_error == "The integration has no Qualtrics project (step 2) any more."

    async def test_attempt_bodies_are_capped_and_hold_no_secret(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        sessionmaker: Sessionmaker,
    ) -> None:
        delivery_id = await make_delivery()
        echo = f"client_secret={QUALTRICS_CLIENT_SECRET} " + "x" * 5000
        qualtrics.inject_fault("status", status=422, error_message=echo, path_pattern=RESPONSES)

        assert await send_delivery(delivery_context, delivery_id) is Outcome.FAILED

        [attempt] = await load_attempts(sessionmaker, delivery_id)
        assert attempt.response_body is not None
        assert 1000 < len(attempt.response_body) <= MAX_SNIPPET_CHARS
        assert QUALTRICS_CLIENT_SECRET not in attempt.response_body
        assert "[redacted]" in attempt.response_body
        delivery = await load_delivery(sessionmaker, delivery_id)
        assert delivery.last_error is not None
        assert QUALTRICS_CLIENT_SECRET not in delivery.last_error

    async def test_one_log_line_per_attempt_without_values(
        self,
        delivery_context: DeliveryContext,
        make_delivery: DeliveryFactory,
        qualtrics: FakeQualtrics,
        ready: Ready,
        caplog: pytest.LogCaptureFixture,
        clock: Clock,
    ) -> None:
        delivery_id = await make_delivery()
        qualtrics.inject_fault("status", status=500, path_pattern=RESPONSES)
        caplog.set_level(logging.INFO, logger="service.delivery.sender")

        await send_delivery(delivery_context, delivery_id, request_id="req-1")
        clock.advance(20)
        await send_delivery(delivery_context, delivery_id, request_id="req-2")

        lines = [r for r in caplog.records if r.name == "service.delivery.sender"]
        assert [(r.outcome, r.status_code, r.attempt, r.request_id) for r in lines] == [  # type: ignore[attr-defined]
            ("retry_scheduled", 500, 1, "req-1"),
            ("delivered", 200, 2, "req-2"),
        ]
        assert all(r.delivery_id == str(delivery_id) for r in lines)  # type: ignore[attr-defined]
        assert all(r.integration_id == str(ready.integration_id) for r in lines)  # type: ignore[attr-defined]
        text = "\n".join(r.getMessage() for r in lines)
        assert "Sam Agent" not in text
        assert "EMEA" not in text


async def test_a_held_delivery_is_left_alone(
    delivery_context: DeliveryContext,
    make_delivery: DeliveryFactory,
    sessionmaker: Sessionmaker,
) -> None:
    delivery_id = await make_delivery()
    async with sessionmaker.begin() as session:
        delivery = await session.get(Delivery, delivery_id)
        assert delivery is not None
        delivery.status = DeliveryStatus.HELD

    assert await send_delivery(delivery_context, delivery_id) is Outcome.SKIPPED
    assert (await load_delivery(sessionmaker, delivery_id)).status == DeliveryStatus.HELD
