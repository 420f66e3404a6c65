"""(a) A deploy: the old worker gets SIGTERM with deliveries in flight, a new one takes over;
and a worker killed outright (SIGKILL) with deliveries in flight."""

import signal
import time

import httpx

from service.models import DeliveryStatus
from tests.faults.conftest import RESPONSES, ScenarioFactory, add_fault
from tests.worker.conftest import Workers, eventually, responses_by_key


async def test_sigterm_during_a_deploy_finishes_what_is_in_flight(
    scenario: ScenarioFactory, fake_control: httpx.AsyncClient, workers: Workers
) -> None:
    run = await scenario("sigterm_deploy")
    # Every Qualtrics call takes a second, and the old worker runs 30 at a time, so when it
    # is told to stop some deliveries are on the wire and the rest still wait in Redis.
    await fake_control.patch("/_fake/config", json={"latency_seconds": 1.0})
    old = workers.start(worker_max_jobs="30")
    await run.acknowledge(50)

    claimed: list[object] = []

    async def twenty_in_flight() -> bool:
        claimed[:] = await run.in_flight()
        return len(claimed) >= 20

    await eventually(twenty_in_flight, within=15, explain=run.explain)
    old.signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    new = workers.start(ready=False)  # the new release starts while the old one drains
    await run.acknowledge(20)  # intake keeps acknowledging throughout the deploy
    exit_code = old.wait(timeout=20)
    drained = time.monotonic() - stopped_at
    new.wait_ready()

    await run.finish(
        {DeliveryStatus.DELIVERED: 70},
        within=30,
        in_flight_at_sigterm=len(claimed),
        old_worker_exit=exit_code,
        drain_seconds=round(drained, 2),
    )
    assert exit_code == 0, old.log()[-3000:]
    assert "finishing the jobs in flight" in old.log()
    # What was on the wire at SIGTERM was finished and recorded by the old worker itself,
    # with one counted attempt: nothing was cut short and sent again.
    old_log = old.log()
    for delivery_id in claimed:
        assert f"delivery_id={delivery_id} " in old_log
    assert {row.attempts for row in await run.rows()} == {1}


async def test_sigkill_with_deliveries_in_flight_loses_and_doubles_nothing(
    scenario: ScenarioFactory, fake_control: httpx.AsyncClient, workers: Workers
) -> None:
    run = await scenario("worker_sigkill")
    # Qualtrics stores each response, then takes 2 s to answer: when the worker is killed,
    # responses exist in Qualtrics that the service has not yet recorded as delivered.
    await add_fault(
        fake_control,
        kind="hang",
        phase="after",
        seconds=2.0,
        count=None,
        method="POST",
        path_pattern=RESPONSES,
    )
    first = workers.start(worker_max_jobs="40")
    await run.acknowledge(30)

    claimed: list[object] = []

    async def twenty_stored() -> bool:
        claimed[:] = await run.in_flight()
        stored = await responses_by_key(fake_control, run.integration.survey_id)
        return len(stored) >= 20

    await eventually(twenty_stored, within=15, explain=run.explain)
    first.signal(signal.SIGKILL)
    first.wait(timeout=5)
    run.mark("sigkill")
    stored = len(await responses_by_key(fake_control, run.integration.survey_id))
    recorded = (await run.counts())[DeliveryStatus.DELIVERED]
    await fake_control.delete("/_fake/faults")
    workers.start()

    summary = await run.finish(
        {DeliveryStatus.DELIVERED: 30},
        within=40,
        in_flight_at_sigkill=len(claimed),
        stored_unrecorded_at_sigkill=stored - recorded,
    )
    assert len(claimed) >= 20
    # Each response stored before the kill but never recorded was sent again with the same
    # Idempotency-Key; Qualtrics answered with the first response instead of storing another.
    assert summary.extra["posts"] - 30 >= stored - recorded >= 20
