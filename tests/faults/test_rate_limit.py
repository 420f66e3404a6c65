"""(g) A 429 storm: Qualtrics throttles every create-response call for a while. Waiting spends
no attempt (design §8), so when the storm passes every delivery is sent with its first counted
attempt.

The clock is shortened, not the storm: Qualtrics answers `Retry-After: 1` instead of the
minute a real throttle tends to ask for, and the storm lasts 12 of those periods (as a
12-minute storm at `Retry-After: 60` would). Each 429 also pauses the whole brand in the
shared limiter, so a delivery meets the storm either as a 429 (an attempt row that does not
count) or as a limiter wait that ran out (rescheduled, no attempt row); neither is counted.
"""

import asyncio
import re
from collections import Counter

import httpx

from service.models import DeliveryStatus
from tests.faults.conftest import RESPONSES, ScenarioFactory, add_fault
from tests.worker.conftest import Workers

STORM_SECONDS = 12
# The worker's line for a delivery that waited for the brand's limiter in vain (no request).
LIMITER_WAIT = re.compile(r"delivery_id=(\S+) integration_id=\S+ outcome=rate_limited status=None")


async def test_a_429_storm_spends_no_attempt_and_everything_is_delivered_after(
    scenario: ScenarioFactory, fake_control: httpx.AsyncClient, workers: Workers
) -> None:
    run = await scenario("qualtrics_429_storm")
    await add_fault(
        fake_control,
        kind="status",
        status=429,
        retry_after=1,
        count=None,  # until cleared
        method="POST",
        path_pattern=RESPONSES,
    )
    workers.start()
    await run.acknowledge(20)
    await asyncio.sleep(STORM_SECONDS)

    during = await run.rows()
    assert {(row.status, row.attempts) for row in during} == {(DeliveryStatus.PENDING, 0)}
    await fake_control.delete("/_fake/faults")
    run.mark("storm")

    throttled = Counter(
        delivery_id
        for delivery_id, outcome, status, _, counted in await run.attempt_log()
        if status == 429 and outcome == "rate_limited" and not counted
    )
    waited = set(LIMITER_WAIT.findall(run.explain_all()))
    summary = await run.finish(
        {DeliveryStatus.DELIVERED: 20},
        within=30,
        storm_seconds=STORM_SECONDS,
        answered_429=sum(throttled.values()),
        max_429_per_delivery=max(throttled.values(), default=0),
        limiter_waits=len(waited),
    )
    # Every delivery was held back by the storm, and none of it counted.
    rows = await run.rows()
    assert {str(delivery_id) for delivery_id in throttled} | waited == {str(r.id) for r in rows}
    assert sum(throttled.values()) >= 20
    assert {row.attempts for row in rows} == {1}
    assert summary.extra["attempts"] == 20
    assert summary.extra["uncounted"] == sum(throttled.values())
