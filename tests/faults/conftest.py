"""The fault harness: real processes, real faults, and a count of what each scenario did.

Every scenario runs the production path: signed webhooks into the API (in process, on the
PostgreSQL test database, enqueueing to our own redis-server), `python -m service worker`
processes, and the fake Qualtrics as its own process. The fixtures are the worker tests' own
(`tests/worker/conftest.py`), imported rather than copied; this module adds the `Scenario`
that counts, per scenario:

- **acknowledged**: webhooks the API answered 202 (the interaction and its delivery are
  committed, so from here on the service owns them);
- **delivered** / **failed** / **dead** / **held**: the deliveries' rows;
- **responses**: distinct Idempotency-Keys with a response in the fake, and **duplicates**,
  keys with more than one response there;
- **lost**: acknowledged interactions whose delivery did not end in the state the scenario
  expects (a `delivered` row counts only with its response in the fake).

`Scenario.finish()` waits for the expected end state (bounded), prints one line
`FAULT scenario=... acknowledged=N delivered=N ... lost=0 seconds=S`, appends it as JSON to the
file named by `FAULT_REPORT` (if set), and asserts 0 lost, 0 duplicate responses, no response
the service did not record, and the expected counts. The lines are repeated in pytest's
terminal summary, so they show without `-s` too.
"""

import asyncio
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.config import Settings
from service.models import Delivery, DeliveryAttempt, DeliveryStatus, Interaction
from service.models.base import utc_now
from tests.conftest import Account, make_settings
from tests.webhooks.helpers import event, interaction, organization_secret, post_event
from tests.worker.conftest import (  # noqa: F401 (fixtures reused from the worker tests)
    Integration,
    Workers,
    app,
    database_url,
    enabled_integration,
    redis_server,
    redis_url,
    response_posts,
    responses_by_key,
    workers,
)

REPORTED: list[str] = []


@pytest.fixture
def settings(database_url: str, fake_qualtrics_url: str, redis_url: str) -> Settings:  # noqa: F811
    """The API as deployed: it enqueues to the Redis the worker processes consume."""
    return make_settings(
        database_url,
        qualtrics_base_url=fake_qualtrics_url + "/{subdomain}",
        redis_url=redis_url,
        embedded_workers=0,
    )


@dataclass(frozen=True)
class Summary:
    scenario: str
    acknowledged: int
    delivered: int
    responses: int
    duplicates: int
    failed: int
    dead: int
    held: int
    lost: int
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        head = {
            "scenario": self.scenario,
            "acknowledged": self.acknowledged,
            "delivered": self.delivered,
            "responses": self.responses,
            "duplicates": self.duplicates,
            "failed": self.failed,
            "dead": self.dead,
            "held": self.held,
            "lost": self.lost,
            "seconds": round(self.seconds, 2),
        }
        return {**head, **self.extra}

    def line(self) -> str:
        return "FAULT " + " ".join(f"{name}={value}" for name, value in self.fields().items())


def report(summary: Summary) -> None:
    line = summary.line()
    REPORTED.append(line)
    print(f"\n{line}")
    path = os.environ.get("FAULT_REPORT")
    if path:
        with Path(path).open("a", encoding="utf-8") as out:
            out.write(json.dumps(summary.fields()) + "\n")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if REPORTED:
        terminalreporter.section("fault scenarios")
        for line in REPORTED:
            terminalreporter.write_line(line)


@dataclass(frozen=True)
class DeliveryRow:
    id: uuid.UUID
    external_id: str
    status: DeliveryStatus
    attempts: int
    last_error: str | None


class Scenario:
    """One fault scenario's webhooks, and the books kept on them."""

    def __init__(
        self,
        name: str,
        *,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        control: httpx.AsyncClient,
        integration: Integration,
        secret: str,
        pool: Workers,
    ) -> None:
        self.name = name
        self.client = client
        self.admin = admin
        self.sessionmaker = sessionmaker
        self.control = control
        self.integration = integration
        self.secret = secret
        self.workers = pool
        self.acknowledged: list[str] = []
        self.seen: dict[str, int] = {}  # responses per Idempotency-Key, as last seen
        self.posts_seen = 0
        self.started: float | None = None
        self.marks: dict[str, float] = {}

    def mark(self, name: str) -> None:
        """Remember this moment; the summary says how long after it everything settled."""
        self.marks[name] = time.monotonic()

    # -- webhooks --------------------------------------------------------------------------

    async def send(
        self, count: int, *, client: httpx.AsyncClient | None = None, concurrency: int = 10
    ) -> list[tuple[str, httpx.Response, float]]:
        """`count` signed `interaction.completed` webhooks, `concurrency` at a time; returns
        (interaction id, answer, seconds) each; the 202s are counted as acknowledged."""
        if self.started is None:
            self.started = time.monotonic()
        http = client or self.client
        semaphore = asyncio.Semaphore(concurrency)

        async def one() -> tuple[str, httpx.Response, float]:
            data = interaction()
            async with semaphore:
                began = time.monotonic()
                answer = await post_event(
                    http, self.integration.organization_id, self.secret, event(data)
                )
                took = time.monotonic() - began
            if answer.status_code == 202:
                self.acknowledged.append(data["id"])
            return data["id"], answer, took

        return list(await asyncio.gather(*(one() for _ in range(count))))

    async def acknowledge(self, count: int, *, concurrency: int = 10) -> list[str]:
        """`count` webhooks that must each be answered 202; their interaction ids."""
        sent = await self.send(count, concurrency=concurrency)
        refused = [
            (answer.status_code, answer.text) for _, answer, _ in sent if answer.status_code != 202
        ]
        assert refused == [], refused[:3]
        return [external_id for external_id, _, _ in sent]

    # -- the books -------------------------------------------------------------------------

    async def rows(self, external_ids: list[str] | None = None) -> list[DeliveryRow]:
        ids = self.acknowledged if external_ids is None else external_ids
        async with self.sessionmaker() as session:
            result = await session.execute(
                select(
                    Delivery.id,
                    Interaction.external_id,
                    Delivery.status,
                    Delivery.attempts,
                    Delivery.last_error,
                )
                .join(Interaction, Interaction.id == Delivery.interaction_id)
                .where(
                    Interaction.organization_id == self.integration.organization_id,
                    Interaction.external_id.in_(ids),
                )
            )
            return [DeliveryRow(*row) for row in result.all()]

    async def counts(self, external_ids: list[str] | None = None) -> Counter[DeliveryStatus]:
        return Counter(row.status for row in await self.rows(external_ids))

    async def in_flight(self) -> list[uuid.UUID]:
        """Deliveries a run has claimed right now (the sender's lease moves next_attempt_at
        ahead; nothing else here schedules a pending row in the future)."""
        async with self.sessionmaker() as session:
            result = await session.scalars(
                select(Delivery.id)
                .join(Interaction, Interaction.id == Delivery.interaction_id)
                .where(
                    Interaction.organization_id == self.integration.organization_id,
                    Delivery.status == DeliveryStatus.PENDING,
                    Delivery.next_attempt_at > utc_now(),
                )
            )
            return list(result.all())

    async def attempt_counts(self) -> tuple[int, int]:
        """(counted, not counted) attempt rows of this scenario's deliveries."""
        ids = [row.id for row in await self.rows()]
        async with self.sessionmaker() as session:
            result = await session.execute(
                select(DeliveryAttempt.counted, func.count())
                .where(DeliveryAttempt.delivery_id.in_(ids))
                .group_by(DeliveryAttempt.counted)
            )
            by_counted = dict(result.all())
        return by_counted.get(True, 0), by_counted.get(False, 0)

    async def attempt_log(self) -> list[tuple[uuid.UUID, str, int | None, str | None, bool]]:
        """(delivery id, outcome, status code, error class, counted) of every attempt row."""
        ids = [row.id for row in await self.rows()]
        async with self.sessionmaker() as session:
            result = await session.execute(
                select(
                    DeliveryAttempt.delivery_id,
                    DeliveryAttempt.outcome,
                    DeliveryAttempt.status_code,
                    DeliveryAttempt.error_class,
                    DeliveryAttempt.counted,
                ).where(DeliveryAttempt.delivery_id.in_(ids))
            )
            return [(row[0], row[1], row[2], row[3], row[4]) for row in result.all()]

    async def snapshot_responses(self) -> None:
        """Remember the fake's responses per key (call before deleting the survey)."""
        for key, count in (
            await responses_by_key(self.control, self.integration.survey_id)
        ).items():
            self.seen[key] = max(self.seen.get(key, 0), count)
        self.posts_seen = max(
            self.posts_seen, await response_posts(self.control, self.integration.survey_id)
        )

    async def wait_for(
        self, expect: Mapping[DeliveryStatus, int], *, within: float, ids: list[str] | None = None
    ) -> bool:
        """Until the deliveries' statuses are exactly `expect`; False after `within` seconds."""
        wanted = {status: n for status, n in expect.items() if n}
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if dict(await self.counts(ids)) == wanted:
                return True
            await asyncio.sleep(0.1)
        return False

    def explain(self) -> str:
        return "\n".join(worker.log()[-2500:] for worker in self.workers.started)

    def explain_all(self) -> str:
        """Every worker's whole log."""
        return "\n".join(worker.log() for worker in self.workers.started)

    async def finish(
        self,
        expect: Mapping[DeliveryStatus, int],
        *,
        within: float,
        survey_gone: bool = False,
        **extra: Any,
    ) -> Summary:
        """Wait for `expect`, count, report one line, and assert nothing was lost or doubled."""
        settled = await self.wait_for(expect, within=within)
        ended = time.monotonic()
        if not survey_gone:
            await self.snapshot_responses()
        rows = await self.rows()
        by_external = {row.external_id: row for row in rows}
        by_id = {str(row.id): row for row in rows}
        kept = 0
        for external_id in self.acknowledged:
            row = by_external.get(external_id)
            if row is None or row.status not in expect:
                continue
            if row.status is DeliveryStatus.DELIVERED and self.seen.get(str(row.id), 0) < 1:
                continue
            kept += 1
        counts = Counter(row.status for row in rows)
        counted, not_counted = await self.attempt_counts()
        summary = Summary(
            scenario=self.name,
            acknowledged=len(self.acknowledged),
            delivered=counts[DeliveryStatus.DELIVERED],
            responses=len(self.seen),
            duplicates=sum(1 for n in self.seen.values() if n > 1),
            failed=counts[DeliveryStatus.FAILED],
            dead=counts[DeliveryStatus.DEAD],
            held=counts[DeliveryStatus.HELD],
            lost=len(self.acknowledged) - kept,
            seconds=ended - (self.started or ended),
            extra={
                "posts": self.posts_seen,
                "attempts": counted,
                "uncounted": not_counted,
                **{
                    f"settled_after_{name}": round(ended - at, 2) for name, at in self.marks.items()
                },
                **extra,
            },
        )
        report(summary)
        assert "deadlock detected" not in self.explain_all()
        assert settled, f"{dict(counts)} is not {dict(expect)}\n{self.explain()}"
        assert summary.lost == 0, summary.line()
        assert summary.duplicates == 0, summary.line()
        # Every response in Qualtrics is one the service knows it delivered.
        foreign = [key for key in self.seen if key not in by_id]
        unrecorded = [
            key
            for key in self.seen
            if key in by_id and by_id[key].status is not DeliveryStatus.DELIVERED
        ]
        assert foreign == [], foreign
        assert unrecorded == [], unrecorded
        return summary


ScenarioFactory = Callable[[str], Awaitable[Scenario]]


@pytest.fixture
def scenario(
    client: httpx.AsyncClient,
    admin: Account,
    sessionmaker: async_sessionmaker[AsyncSession],
    fake_control: httpx.AsyncClient,
    workers: Workers,  # noqa: F811
) -> ScenarioFactory:
    """`await scenario(name)`: an enabled integration (steps 1-5 through the API, its trigger
    matches every interaction) and the books for one scenario."""

    async def start(name: str) -> Scenario:
        integration = await enabled_integration(client, admin)
        secret = await organization_secret(sessionmaker, admin.organization.id)
        return Scenario(
            name,
            client=client,
            admin=admin,
            sessionmaker=sessionmaker,
            control=fake_control,
            integration=integration,
            secret=secret,
            pool=workers,
        )

    return start


async def add_fault(control: httpx.AsyncClient, **fault: Any) -> None:
    """One fault on the fake (see `service.testing.fake_qualtrics.config.Fault`)."""
    answer = await control.post("/_fake/faults", json=fault)
    assert answer.status_code == 201, answer.text


RESPONSES = "/responses$"  # create-response, whatever the survey
