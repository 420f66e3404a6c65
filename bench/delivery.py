"""Issue 6 item 4: one worker's delivery rate against a bare httpx loop, same fake, same run.

Target: one `service worker` process against the fake Qualtrics answering after 50 ms delivers
at least 0.7 x the rate of a bare httpx loop with the same number of requests in flight
(the worker's `CONNECTOR_WORKER_MAX_JOBS`) to the same fake. The baseline is the faster of the
loop's two shapes (reliability-facts §7: one shared `AsyncClient` turns CPU-bound between 30
and 40 in flight, one client per task does not).

How it measures, in alternating rounds (bare shared, bare per task, worker, ...):

- **bare loop** (in this process): N tasks POST the very request the worker sends (the body
  from the integration's preview, a valid bearer token, a fresh Idempotency-Key each, so the
  fake stores a response each time, as it does for the worker) for `--seconds`, after a
  second of warm-up; the rate is the 200s answered inside the window.
- **worker**: `--deliveries` interactions and their deliveries are stored and enqueued (the
  api is stopped by then: nothing else competes for the two cores), then one worker starts;
  the rate is taken from the deliveries' `delivered_at` between the 100th and the
  last-but-100th, the steady state without start-up and drain. The round then checks that
  the fake stored exactly one response per delivery (none lost, none twice).

The fake forgets the stored responses after every round, so its memory (and its garbage
collector's work) does not grow from round to round.

The figure is the median worker rate over the median of the faster bare shape. `INFO` lines
give each round and the worker's CPU per delivery. `--smoke`: one short round of each (< 60 s).

The worker's own client is httpx over aiohttp's pool (service.qualtrics.transport), cheaper per
request than either bare httpx shape. The baseline stays what the target names, bare httpx;
for comparison each round also runs the bare loop on the worker's transport (one shared
client), printed as `delivery.bare.worker_transport` and as an extra of the figure, not used
in the ratio.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.harness import IntegrationSetup, Setup, Stack, WebhookFactory
from bench.report import Figure, exit_with, info
from service.qualtrics.transport import QualtricsTransport
from service.worker.supervisor import event_loop_factory

TARGET = 0.7
LATENCY = 0.05
STEADY_SKIP = 100  # deliveries left out at each end of a worker round
WARM_UP = 1.0
BARE_TOKEN = "BENCH_BARE_TOKEN"  # noqa: S105 (the name of the variable that carries it)
# The bare loop's shapes: the two httpx ones the target names, and the worker's transport.
SHAPES = ("shared_client", "client_per_task", "worker_transport")


@dataclass(frozen=True)
class Options:
    rounds: int
    in_flight: int
    deliveries: int
    seconds: float
    latency: float
    fields: int


@dataclass(frozen=True)
class Target:
    """The create-response request both sides send."""

    url: str
    body: bytes
    token: str


async def preview_request(stack: Stack, setup: Setup, integration: IntegrationSetup) -> Target:
    """The exact create-response request the worker sends for a generated interaction."""
    interaction = WebhookFactory(setup.webhook_secret).interaction()
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api:
        answer = await api.post(
            f"/v1/integrations/{integration.id}/preview",
            json={"interaction": interaction, "trigger_name": integration.matching_trigger},
            headers=setup.admin_headers,
        )
    answer.raise_for_status()
    request: dict[str, Any] = answer.json()["request"]
    body = httpx.Request("POST", "http://x", json=request["body"]).content
    token = await stack.fake_access_token(integration.account)
    return Target(url=str(request["url"]), body=body, token=token)


@dataclass(frozen=True)
class BareRound:
    rate: float
    cpu_ms_per_request: float


async def bare_round(
    stack: Stack, target: Target, *, in_flight: int, seconds: float, shape: str
) -> BareRound:
    """The bare loop as a process of its own (like the worker), on the worker's event loop."""
    body = stack.workdir / "bare-body.json"
    body.write_bytes(target.body)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.delivery",
        "--bare",
        target.url,
        "--body-file",
        str(body),
        "--in-flight",
        str(in_flight),
        "--seconds",
        str(seconds),
        "--shape",
        shape,
        env={**stack.env, BARE_TOKEN: target.token},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the bare loop failed:\n{err.decode(errors='replace')[-3000:]}")
    answer = json.loads(out)
    return BareRound(rate=answer["rate"], cpu_ms_per_request=answer["cpu_ms_per_request"])


def bare_clients(shape: str, in_flight: int) -> list[httpx.AsyncClient]:
    """One client per task, or one shared by all (`in_flight` times the same object)."""
    if shape == "client_per_task":
        return [httpx.AsyncClient(timeout=30) for _ in range(in_flight)]
    if shape == "shared_client":
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        return [httpx.AsyncClient(limits=limits, timeout=30)] * in_flight
    if shape == "worker_transport":
        transport = QualtricsTransport(max_connections=in_flight)
        return [httpx.AsyncClient(transport=transport, timeout=30)] * in_flight
    raise ValueError(f"unknown shape {shape!r}")


async def bare_loop(target: Target, *, in_flight: int, seconds: float, shape: str) -> BareRound:
    """`in_flight` tasks POSTing `target` in a loop; the 200s answered in the window per
    second, after a warm-up."""
    clients = bare_clients(shape, in_flight)
    started = time.monotonic()
    window = (started + WARM_UP, started + WARM_UP + seconds)
    counted = 0
    failed = 0
    cpu: list[float] = []

    async def loop(client: httpx.AsyncClient) -> None:
        nonlocal counted, failed
        headers = {
            "Authorization": f"Bearer {target.token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        while time.monotonic() < window[1]:
            if not cpu and time.monotonic() >= window[0]:
                cpu.append(time.process_time())
            headers["Idempotency-Key"] = str(uuid.uuid4())
            answer = await client.post(target.url, content=target.body, headers=headers)
            finished = time.monotonic()
            if answer.status_code != 200:
                failed += 1
            elif window[0] <= finished <= window[1]:
                counted += 1

    try:
        await asyncio.gather(*(loop(client) for client in clients))
        cpu.append(time.process_time())
    finally:
        for client in set(clients):
            await client.aclose()
    if failed:
        raise RuntimeError(f"the bare loop got {failed} non-200 answers")
    return BareRound(counted / seconds, (cpu[-1] - cpu[0]) * 1000 / max(counted, 1))


@dataclass(frozen=True)
class WorkerRound:
    rate: float
    delivered: int
    seconds: float
    cpu_ms_per_delivery: float
    rss_mib: float


async def worker_round(stack: Stack, setup: Setup, options: Options) -> WorkerRound:
    ids = await stack.plan_deliveries(setup, options.deliveries)
    before = (await stack.delivery_counts(setup.organization_id)).get("delivered", 0)
    await stack.enqueue(ids)
    await stack.quiesce_database()  # fresh statistics, no autovacuum catching up meanwhile
    (worker,) = await stack.start_workers(
        1,
        worker_max_jobs=options.in_flight,
        # The limiter is part of the path (one Redis script per request), but must not be
        # the limit here: the brand may take every job's request at once.
        qualtrics_rate_per_second=100_000,
        qualtrics_burst=options.in_flight,
        qualtrics_max_concurrency=options.in_flight,
    )
    cpu_before = worker.cpu_seconds()
    took = await stack.wait_delivered(
        before + len(ids), within=60 + len(ids) / 20, organization_id=setup.organization_id
    )
    cpu = worker.cpu_seconds() - cpu_before
    rss = worker.rss_mib()
    stack.stop_workers()
    times = await stack.delivered_times(ids)
    # Every guarantee still holds at speed: one response per delivery, keyed by its id.
    stored = await stack.fake_responses(setup.survey_ids[0])
    expected = {str(delivery_id) for delivery_id in ids}
    duplicates = sum(1 for count in stored.values() if count > 1)
    if set(stored) != expected or duplicates:
        lost, foreign = len(expected - set(stored)), len(set(stored) - expected)
        raise RuntimeError(f"responses: {lost} lost, {foreign} foreign, {duplicates} twice")
    return WorkerRound(
        rate=steady_rate([moment.timestamp() for moment in times]),
        delivered=len(times),
        seconds=took,
        cpu_ms_per_delivery=cpu * 1000 / len(ids),
        rss_mib=rss,
    )


def steady_rate(times: Sequence[float], skip: int = STEADY_SKIP) -> float:
    """Events per second between the `skip`-th and the last-but-`skip`-th of sorted `times`."""
    if len(times) < 2 * skip + 2:
        raise ValueError(f"need more than {2 * skip + 1} events for a steady window")
    first, last = times[skip], times[-skip - 1]
    return (len(times) - 2 * skip - 1) / (last - first)


async def run(options: Options) -> list[Figure]:
    async with Stack(database="postgres", fake_latency=options.latency) as stack:
        setup = await stack.setup(integrations=1, triggers_per_integration=5, fields=options.fields)
        target = await preview_request(stack, setup, setup.integrations[0])
        stack.stop_api()  # nothing but the measured side may use the CPUs
        bare_rates: dict[str, list[float]] = {shape: [] for shape in SHAPES}
        worker: list[WorkerRound] = []
        for number in range(1, options.rounds + 1):
            for shape, rates in bare_rates.items():
                bare = await bare_round(
                    stack,
                    target,
                    in_flight=options.in_flight,
                    seconds=options.seconds,
                    shape=shape,
                )
                rates.append(bare.rate)
                await stack.clear_fake_responses(setup.survey_ids[0])
                info(
                    f"delivery.bare.{shape}",
                    round=number,
                    rate=bare.rate,
                    cpu_ms_per_request=bare.cpu_ms_per_request,
                    in_flight=options.in_flight,
                )
            measured = await worker_round(stack, setup, options)
            await stack.clear_fake_responses(setup.survey_ids[0])
            worker.append(measured)
            info(
                "delivery.worker",
                round=number,
                rate=measured.rate,
                delivered=measured.delivered,
                seconds=measured.seconds,
                cpu_ms_per_delivery=measured.cpu_ms_per_delivery,
                rss_mib=measured.rss_mib,
            )
        fake_rss = stack.fake_process.rss_mib()
    best_shape, baseline = max(
        ((shape, statistics.median(bare_rates[shape])) for shape in SHAPES[:2]),
        key=lambda item: item[1],
    )
    value = statistics.median(round_.rate for round_ in worker)
    return [
        Figure(
            name="delivery.one_worker_vs_bare_httpx",
            value=value,
            unit="/s",
            target=TARGET,
            compare=">=",
            baseline=baseline,
            note=f"fake latency {options.latency * 1000:.0f} ms, {options.in_flight} in flight; "
            f"baseline: bare httpx, {best_shape.replace('_', ' ')}",
            extra={
                "rounds": options.rounds,
                "worker_cpu_ms": statistics.median(r.cpu_ms_per_delivery for r in worker),
                **{shape: statistics.median(rates) for shape, rates in bare_rates.items()},
                "fake_rss_mib": fake_rss,
            },
        )
    ]


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.delivery", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="one short round (< 60 s), for CI")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-flight", type=int, default=50, help="the worker's max jobs")
    parser.add_argument("--deliveries", type=int, default=4000, help="per worker round")
    parser.add_argument("--seconds", type=float, default=6.0, help="per bare round")
    parser.add_argument("--latency", type=float, default=LATENCY, help="the fake's, seconds")
    parser.add_argument("--fields", type=int, default=20, help="data fields per response")
    args = parser.parse_args(argv)
    if args.smoke:
        return Options(1, args.in_flight, 1200, 3.0, args.latency, args.fields)
    return Options(
        args.rounds, args.in_flight, args.deliveries, args.seconds, args.latency, args.fields
    )


def bare_main(argv: Sequence[str]) -> None:
    """`--bare URL`: one bare round in this process; prints `{"rate", "cpu_ms_per_request"}`."""
    parser = argparse.ArgumentParser(prog="python -m bench.delivery --bare")
    parser.add_argument("--bare", required=True, metavar="URL")
    parser.add_argument("--body-file", required=True, type=Path)
    parser.add_argument("--in-flight", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--shape", choices=SHAPES, required=True)
    args = parser.parse_args(argv)
    target = Target(args.bare, args.body_file.read_bytes(), os.environ[BARE_TOKEN])
    with asyncio.Runner(loop_factory=event_loop_factory()) as runner:
        result = runner.run(
            bare_loop(target, in_flight=args.in_flight, seconds=args.seconds, shape=args.shape)
        )
    print(json.dumps({"rate": result.rate, "cpu_ms_per_request": result.cpu_ms_per_request}))


def main(argv: Sequence[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if "--bare" in arguments:
        bare_main(arguments)
        return
    exit_with(asyncio.run(run(parse(arguments))))


if __name__ == "__main__":
    main()
