"""(a) A deploy: the old worker gets SIGTERM with deliveries in flight, a new one takes over."""

import signal
import time

import httpx

from service.models import DeliveryStatus
from tests.faults.conftest import ScenarioFactory
from tests.worker.conftest import Workers, eventually


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
