"""(d) 5xx bursts, dropped connections and timeouts; (e) redirects; (f) oversized and endless
bodies: what Qualtrics (the fake, as its own process) can do wrong to a create-response call.

The worker runs with CONNECTOR_JOB_TIMEOUT=3, so its send budget is 2.25 s (the job timeout
less a quarter): a `hang` longer than that is a real timeout of the delivery, no 45 s wait.
"""

import asyncio
from collections import Counter
from pathlib import Path

import httpx

from service.models import DeliveryStatus
from tests.conftest import Account, free_port
from tests.faults.conftest import RESPONSES, ScenarioFactory, add_fault
from tests.worker.conftest import Workers, eventually


async def test_5xx_bursts_resets_and_timeouts_are_retried_to_delivery(
    scenario: ScenarioFactory,
    fake_control: httpx.AsyncClient,
    workers: Workers,
    client: httpx.AsyncClient,
    admin: Account,
) -> None:
    run = await scenario("qualtrics_5xx_reset_timeout")
    on_create = {"method": "POST", "path_pattern": RESPONSES}
    # Taken in this order by the first create-response requests; 17 of the 30 first tries.
    await add_fault(fake_control, kind="status", status=500, count=4, **on_create)
    await add_fault(fake_control, kind="status", status=503, count=4, **on_create)
    # The connection drops before anything is stored...
    await add_fault(fake_control, kind="reset", count=3, **on_create)
    # ...or after the response was stored: the outcome is unknown to the worker.
    await add_fault(fake_control, kind="reset", phase="after", count=3, **on_create)
    await add_fault(fake_control, kind="hang", phase="after", seconds=4, count=3, **on_create)
    workers.start()
    await run.acknowledge(30)

    summary = await run.finish({DeliveryStatus.DELIVERED: 30}, within=40)

    log = await run.attempt_log()
    retried = Counter(
        (status, error) for _, outcome, status, error, _ in log if outcome == "retry_scheduled"
    )
    assert retried == {
        (500, "QualtricsServerError"): 4,
        (503, "QualtricsServerError"): 4,
        (None, "QualtricsTransportError"): 6,
        (None, "QualtricsTimeout"): 3,
    }
    assert all(counted for *_, counted in log)  # every one spent an attempt
    assert summary.extra["attempts"] == 30 + 17
    # Six responses were stored on the first try; their retries carried the same key, and
    # Qualtrics answered with the first response instead of creating another.
    assert summary.extra["posts"] == 30 + 17
    # The delivery log shows both attempts of a retried delivery.
    twice = next(row for row in await run.rows() if row.attempts == 2)
    shown = (await client.get(f"/v1/deliveries/{twice.id}", headers=admin.headers)).json()
    assert shown["attempts"] == 2
    assert [attempt["outcome"] for attempt in shown["attempt_log"]] == [  # newest first
        "delivered",
        "retry_scheduled",
    ]


async def test_redirects_are_never_followed(
    scenario: ScenarioFactory, fake_control: httpx.AsyncClient, workers: Workers
) -> None:
    run = await scenario("qualtrics_redirect")
    port = free_port()
    connections: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append("connected")
        writer.close()

    target = await asyncio.start_server(accept, "127.0.0.1", port)
    try:
        elsewhere = f"http://127.0.0.1:{port}/API/v3/surveys/{run.integration.survey_id}/responses"
        await add_fault(
            fake_control,
            kind="redirect",
            location=elsewhere,
            count=4,
            method="POST",
            path_pattern=RESPONSES,
        )
        workers.start()
        await run.acknowledge(10)
        await run.finish(
            {DeliveryStatus.DELIVERED: 6, DeliveryStatus.FAILED: 4},
            within=20,
            redirect_target_requests=len(connections),
        )
    finally:
        target.close()
        await target.wait_closed()
    assert connections == [], "a redirect was followed"
    failed = [row for row in await run.rows() if row.status is DeliveryStatus.FAILED]
    assert all("redirect" in (row.last_error or "") for row in failed), failed
    assert all(row.attempts == 1 for row in failed)  # failed at once, never retried


def rss_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (the peak) of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


async def test_oversized_and_endless_bodies_fail_without_memory_blowup(
    scenario: ScenarioFactory, fake_control: httpx.AsyncClient, workers: Workers
) -> None:
    run = await scenario("qualtrics_oversized_body")
    worker = workers.start()
    assert worker.process is not None
    pid = worker.process.pid
    # Warm up: the worker's first delivery loads everything a delivery needs.
    await run.acknowledge(2)

    async def warm() -> bool:
        return (await run.counts())[DeliveryStatus.DELIVERED] == 2

    await eventually(warm, within=15, explain=run.explain)
    before = rss_kib(pid, "VmRSS")
    samples: list[int] = []

    async def sample() -> None:
        while True:
            samples.append(rss_kib(pid, "VmRSS"))
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    on_create = {"method": "POST", "path_pattern": RESPONSES}
    # 50 MiB, announced in Content-Length; and a body that never ends (chunked, no length).
    await add_fault(fake_control, kind="body", body_bytes=50 * 1024 * 1024, count=3, **on_create)
    await add_fault(fake_control, kind="body", body_bytes=None, count=3, **on_create)
    await run.acknowledge(12)
    try:
        await run.wait_for({DeliveryStatus.DELIVERED: 8, DeliveryStatus.FAILED: 6}, within=20)
    finally:
        sampler.cancel()
    highest = max(samples)
    await run.finish(
        {DeliveryStatus.DELIVERED: 8, DeliveryStatus.FAILED: 6},
        within=1,
        rss_before_mib=round(before / 1024, 1),
        rss_max_mib=round(highest / 1024, 1),
        rss_samples=len(samples),
    )
    # Each answer is read up to the 1 MiB cap and no further (the 50 MiB one not at all).
    assert highest - before < 32 * 1024, f"the worker grew from {before} KiB to {highest} KiB"
    assert worker.process.poll() is None  # still running, and delivering (the 8 above)
    failed = [row for row in await run.rows() if row.status is DeliveryStatus.FAILED]
    assert all("byte limit" in (row.last_error or "") for row in failed), failed
