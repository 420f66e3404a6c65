"""Memory (issue 6, item 7): the api and the worker stay small and do not grow.

    python -m bench.memory [--smoke] [--interactions 100000] [--soak-seconds 600]

Targets: `service api` and each `service worker` stay at or below 200 MB resident (RSS,
decimal megabytes: 200 MB = 190.7 MiB) while 100,000 interactions go through, and neither
grows over a 10-minute soak.

The stack: PostgreSQL, Redis, the fake Qualtrics answering after `--latency` (10 ms), the api
and `--workers` (1) workers; an organization with one integration (one delivery per
interaction). The connector's per-brand limiter is opened up (`--brand-rate`, default
100,000/s): its default of 10 requests/s per brand would take 3 hours for 100,000 deliveries
and measure nothing but waiting.

1. **Push**: `--interactions` new signed 2 KB webhooks, closed model (`--connections` loops,
   each sending its next webhook when the previous 202 is in: the api at its maximum, the
   worker competing for the CPU and building a backlog), then wait until every one is
   delivered. Every acknowledged interaction must be delivered, every answer a 202.
2. **Soak**: a steady `--soak-rate` (100/s) paced load for `--soak-seconds`, then the drain.

RSS (`/proc/PID/status` VmRSS) of the api and every worker is sampled every second
throughout (every 2 s in the soak). Figures:

- the maximum RSS of the api and of the largest worker over the whole run (≤ 200 MB);
- **growth over the soak**, per process: the mean RSS of the last 20 % of the soak's samples
  minus that of the first 20 % after a warm-up (the first minute; a third of a shorter soak),
  against a tolerance of max(10 MB, 5 % of the starting RSS). CPython's allocator keeps freed
  arenas and pymalloc pools, so RSS moves in steps of a few MB with no leak at all, and a
  mean over many samples smooths single steps; 10 MB is a few such steps, while a leak of
  even ~150 bytes per interaction (at 100/s, ~50,000 interactions after the warm-up) would
  cross it. The figure is growth / tolerance (≤ 1.0);
- **the trend**: the least-squares slope of the same samples, in MB/min, extrapolated over
  the whole soak, against the same tolerance (≤ 1.0). It catches a steady leak even when the
  two window means are noisy, and ignores a one-off step early on less than the means do.
"""

import argparse
import asyncio
import contextlib
import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench._pacer import CpuWindow, SendRun, WebhookSender, on_the_fly
from bench.harness import Proc, Setup, Stack, WebhookFactory, webhook_path
from bench.report import Figure, info, report

TARGET_MB = 200.0
MIB = 1024 * 1024 / 1e6  # MB in a MiB
TOLERANCE_MB = 10.0
TOLERANCE_SHARE = 0.05
WINDOW_SHARE = 0.2  # the first and last fifth of the soak's samples after its warm-up
PROGRESS_EVERY = 30.0


@dataclass(frozen=True)
class Options:
    interactions: int
    soak_seconds: float
    soak_rate: float
    soak_warmup: float
    workers: int
    connections: int
    latency: float
    brand_rate: float
    sample_interval: float
    soak_sample_interval: float


@dataclass(frozen=True)
class Sample:
    at: float  # seconds since the stack was ready
    phase: str
    api: float  # MB
    workers: tuple[float, ...]  # MB, one per worker


class Sampler:
    """Samples the api's and the workers' RSS in the background, labelled with a phase."""

    def __init__(self, api: Proc, workers: Sequence[Proc], interval: float) -> None:
        self.api = api
        self.workers = list(workers)
        self.interval = interval
        self.phase = "setup"
        self.samples: list[Sample] = []
        self.started = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    def take(self) -> Sample:
        sample = Sample(
            at=time.monotonic() - self.started,
            phase=self.phase,
            api=self.api.rss_mib() * MIB,
            workers=tuple(worker.rss_mib() * MIB for worker in self.workers),
        )
        self.samples.append(sample)
        return sample

    async def _loop(self) -> None:
        while True:
            self.take()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.take()

    def in_phase(self, *phases: str) -> list[Sample]:
        return [sample for sample in self.samples if sample.phase in phases]


@dataclass(frozen=True)
class Trend:
    """How one process's RSS moved over the soak after its warm-up."""

    samples: int
    first: float  # MB: mean of the first window
    last: float  # MB: mean of the last window
    slope: float  # MB per minute (least squares)
    projected: float  # MB: the slope over the whole soak
    tolerance: float  # MB

    @property
    def growth(self) -> float:
        return self.last - self.first


def trend(points: Sequence[tuple[float, float]], soak_seconds: float) -> Trend:
    """`points` are (seconds, MB) after the warm-up, in order."""
    if len(points) < 5:
        raise RuntimeError(f"only {len(points)} soak samples after the warm-up: soak longer")
    window = max(1, round(len(points) * WINDOW_SHARE))
    first = statistics.fmean(value for _, value in points[:window])
    last = statistics.fmean(value for _, value in points[-window:])
    times = [moment for moment, _ in points]
    values = [value for _, value in points]
    mean_t, mean_v = statistics.fmean(times), statistics.fmean(values)
    spread = sum((moment - mean_t) ** 2 for moment in times)
    slope = (
        sum((moment - mean_t) * (value - mean_v) for moment, value in points) / spread
        if spread
        else 0.0
    )
    return Trend(
        samples=len(points),
        first=first,
        last=last,
        slope=slope * 60,
        projected=slope * soak_seconds,
        tolerance=max(TOLERANCE_MB, TOLERANCE_SHARE * first),
    )


def progress(stack: Stack, sampler: Sampler, delivered: int | None = None) -> None:
    sample = sampler.samples[-1] if sampler.samples else sampler.take()
    workers = "/".join(f"{value:.0f}" for value in sample.workers)
    done = "" if delivered is None else f" delivered={delivered}"
    print(
        f"[{sample.at:6.0f} s] {sampler.phase}{done} api={sample.api:.0f} MB "
        f"worker={workers} MB fake={stack.fake_process.rss_mib() * MIB:.0f} MB",
        file=sys.stderr,
        flush=True,
    )


async def delivered_count(stack: Stack, setup: Setup) -> int:
    return (await stack.delivery_counts(setup.organization_id)).get("delivered", 0)


async def drain(stack: Stack, setup: Setup, sampler: Sampler, expected: int) -> float:
    """Seconds until `expected` deliveries of the organization are delivered (or NaN after
    a timeout), printing progress meanwhile."""
    started = time.monotonic()
    within = 300 + expected / 20
    last_print = 0.0
    while time.monotonic() - started < within:
        done = await delivered_count(stack, setup)
        if done >= expected:
            return time.monotonic() - started
        if time.monotonic() - last_print > PROGRESS_EVERY:
            progress(stack, sampler, done)
            last_print = time.monotonic()
        if any(not worker.alive for worker in stack.workers):
            break
        await asyncio.sleep(0.5)
    counts = await stack.delivery_counts(setup.organization_id)
    print(f"not drained: {counts}, wanted {expected} delivered", file=sys.stderr)
    return math.nan


async def push(stack: Stack, setup: Setup, sampler: Sampler, options: Options) -> SendRun:
    host = stack.api_url.removeprefix("http://")
    make = on_the_fly(WebhookFactory(setup.webhook_secret), host, webhook_path(setup), "push")
    last_print = time.monotonic()

    def on_progress(index: int) -> None:
        nonlocal last_print
        if time.monotonic() - last_print > PROGRESS_EVERY:
            print(f"  sent {index}", file=sys.stderr, flush=True)
            progress(stack, sampler)
            last_print = time.monotonic()

    async with WebhookSender.for_url(stack.api_url, webhook_path(setup)) as sender:
        return await sender.closed(
            options.interactions,
            make,
            connections=options.connections,
            on_progress=on_progress,
        )


async def soak(stack: Stack, setup: Setup, sampler: Sampler, options: Options) -> SendRun:
    host = stack.api_url.removeprefix("http://")
    make = on_the_fly(WebhookFactory(setup.webhook_secret), host, webhook_path(setup), "soak")
    count = round(options.soak_rate * options.soak_seconds)
    last_print = time.monotonic()

    def on_progress(index: int) -> None:
        nonlocal last_print
        if time.monotonic() - last_print > PROGRESS_EVERY:
            progress(stack, sampler)
            last_print = time.monotonic()

    async with WebhookSender.for_url(stack.api_url, webhook_path(setup)) as sender:
        return await sender.paced(
            options.soak_rate, count, make, keep=False, on_progress=on_progress
        )


async def measure(options: Options) -> list[Figure]:
    async with Stack(database="postgres", fake_latency=options.latency) as stack:
        setup = await stack.setup(integrations=1)
        workers = await stack.start_workers(
            options.workers,
            qualtrics_rate_per_second=options.brand_rate,
            qualtrics_burst=50,
            qualtrics_max_concurrency=50,
        )
        api = stack.api_process
        if api is None:
            raise RuntimeError("the setup did not start the api")
        sampler = Sampler(api, workers, options.sample_interval)
        sampler.start()
        start_sample = sampler.take()
        info(
            "memory_setup",
            interactions=options.interactions,
            soak_s=options.soak_seconds,
            soak_rate=options.soak_rate,
            workers=options.workers,
            connections=options.connections,
            fake_latency_ms=options.latency * 1000,
            api_start_mb=round(start_sample.api, 1),
            worker_start_mb=round(max(start_sample.workers), 1),
        )

        # 1. Push, then drain.
        sampler.phase = "push"
        window = CpuWindow(stack.processes)
        pushed = await push(stack, setup, sampler, options)
        push_cpu = window.cores()
        delivered_at_push_end = await delivered_count(stack, setup)
        sampler.phase = "drain"
        drained = await drain(stack, setup, sampler, pushed.accepted)
        after_push = sampler.take()
        info(
            "memory_push",
            sent=pushed.count,
            accepted=pushed.accepted,
            seconds=round(pushed.seconds, 1),
            rate=round(pushed.count / pushed.seconds) if pushed.seconds else 0,
            delivered_when_sent=delivered_at_push_end,
            drain_s=round(drained, 1),
            api_mb=round(after_push.api, 1),
            worker_mb=round(max(after_push.workers), 1),
        )
        info("memory_push_cpu_cores", **push_cpu)

        # 2. Soak, then drain.
        sampler.phase = "soak"
        sampler.interval = options.soak_sample_interval
        soak_started = sampler.take().at
        window = CpuWindow(stack.processes)
        soaked = await soak(stack, setup, sampler, options)
        soak_cpu = window.cores()
        sampler.phase = "soak-drain"
        soak_drained = await drain(stack, setup, sampler, pushed.accepted + soaked.accepted)
        await sampler.stop()
        delivered = await delivered_count(stack, setup)
        counts = await stack.delivery_counts(setup.organization_id)
        exited = [proc.name for proc in [api, *workers] if not proc.alive]
        others = {
            "fake_mb": round(stack.fake_process.rss_mib() * MIB),
            "redis_mb": round(stack.redis_process.rss_mib() * MIB),
        }
        info(
            "memory_soak",
            sent=soaked.count,
            accepted=soaked.accepted,
            rate=round(soaked.achieved_rate, 1),
            late_sends=soaked.late,
            max_lateness_ms=round(soaked.max_lateness * 1000, 1),
            drain_s=round(soak_drained, 1),
            **counts,
            **others,
        )
        info("memory_soak_cpu_cores", **soak_cpu)

    return evaluate(
        options,
        sampler,
        soak_started,
        pushed,
        soaked,
        delivered=delivered,
        exited=exited,
    )


def evaluate(
    options: Options,
    sampler: Sampler,
    soak_started: float,
    pushed: SendRun,
    soaked: SendRun,
    *,
    delivered: int,
    exited: list[str],
) -> list[Figure]:
    everything = sampler.samples
    worker_count = len(everything[0].workers)
    api_max = max(sample.api for sample in everything)
    worker_max = max(max(sample.workers) for sample in everything)
    through_push = sampler.in_phase("push", "drain")
    api_max_push = max(sample.api for sample in through_push)
    worker_max_push = max(max(sample.workers) for sample in through_push)

    soak_samples = [
        sample
        for sample in sampler.in_phase("soak")
        if sample.at >= soak_started + options.soak_warmup
    ]
    trends = {"api": trend([(s.at, s.api) for s in soak_samples], options.soak_seconds)}
    for number in range(worker_count):
        trends[f"worker-{number}"] = trend(
            [(s.at, s.workers[number]) for s in soak_samples], options.soak_seconds
        )
    for name, found in trends.items():
        info(
            f"memory_soak_trend_{name.replace('-', '_')}",
            samples=found.samples,
            first_mb=round(found.first, 1),
            last_mb=round(found.last, 1),
            growth_mb=round(found.growth, 2),
            slope_mb_per_min=round(found.slope, 3),
            projected_mb=round(found.projected, 2),
            tolerance_mb=round(found.tolerance, 1),
        )
    worst_growth = max(
        (found for name, found in trends.items() if name != "api"),
        key=lambda found: found.growth / found.tolerance,
    )
    worst_trend = max(
        (found for name, found in trends.items() if name != "api"),
        key=lambda found: found.projected / found.tolerance,
    )
    api_trend = trends["api"]
    acknowledged = pushed.accepted + soaked.accepted
    soak_note = f"{options.soak_seconds:g} s at {options.soak_rate:g}/s"
    return [
        Figure(
            "memory_api_max_rss",
            round(api_max, 1),
            " MB",
            TARGET_MB,
            "<=",
            note=f"{options.interactions} interactions pushed, then the soak",
            extra={
                "through_push_mb": round(api_max_push, 1),
                "samples": len(everything),
            },
        ),
        Figure(
            "memory_worker_max_rss",
            round(worker_max, 1),
            " MB",
            TARGET_MB,
            "<=",
            note=f"largest of {worker_count} worker(s)",
            extra={"through_push_mb": round(worker_max_push, 1)},
        ),
        Figure(
            "memory_api_soak_growth",
            round(api_trend.growth, 2),
            " MB",
            1.0,
            "<=",
            baseline=round(api_trend.tolerance, 1),
            baseline_unit=" MB tolerance",
            note=f"last 20% vs first 20% of the soak after warm-up ({soak_note})",
            extra={"first_mb": round(api_trend.first, 1), "last_mb": round(api_trend.last, 1)},
        ),
        Figure(
            "memory_worker_soak_growth",
            round(worst_growth.growth, 2),
            " MB",
            1.0,
            "<=",
            baseline=round(worst_growth.tolerance, 1),
            baseline_unit=" MB tolerance",
            note=f"worst worker, same windows ({soak_note})",
            extra={
                "first_mb": round(worst_growth.first, 1),
                "last_mb": round(worst_growth.last, 1),
            },
        ),
        Figure(
            "memory_api_soak_trend",
            round(api_trend.projected, 2),
            " MB",
            1.0,
            "<=",
            baseline=round(api_trend.tolerance, 1),
            baseline_unit=" MB tolerance",
            note="least-squares slope extrapolated over the soak",
            extra={"slope_mb_per_min": round(api_trend.slope, 3)},
        ),
        Figure(
            "memory_worker_soak_trend",
            round(worst_trend.projected, 2),
            " MB",
            1.0,
            "<=",
            baseline=round(worst_trend.tolerance, 1),
            baseline_unit=" MB tolerance",
            note="worst worker, slope extrapolated over the soak",
            extra={"slope_mb_per_min": round(worst_trend.slope, 3)},
        ),
        Figure(
            "memory_acknowledged_not_delivered",
            max(0, acknowledged - delivered),
            "",
            0,
            "<=",
            guarantee=True,
            extra={
                "acknowledged": acknowledged,
                "delivered": delivered,
                "not_202": pushed.not_accepted + soaked.not_accepted,
                "exited": ",".join(exited) or "none",
            },
        ),
        Figure(
            "memory_non_202_or_exited",
            pushed.not_accepted + soaked.not_accepted + len(exited),
            "",
            0,
            "<=",
            guarantee=True,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--smoke", action="store_true", help="5,000 interactions and a 30 s soak (CI)"
    )
    parser.add_argument("--interactions", type=int, default=None, help="pushed (100,000)")
    parser.add_argument("--soak-seconds", type=float, default=None, help="(600)")
    parser.add_argument("--soak-rate", type=float, default=100.0, help="interactions/s")
    parser.add_argument(
        "--soak-warmup", type=float, default=None, help="s left out (60; a third of a shorter soak)"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32, help="closed-model push loops")
    parser.add_argument("--latency", type=float, default=0.01, help="the fake's, in s")
    parser.add_argument("--brand-rate", type=float, default=100_000.0)
    args = parser.parse_args()
    interactions = args.interactions or (5_000 if args.smoke else 100_000)
    soak_seconds = args.soak_seconds or (30.0 if args.smoke else 600.0)
    options = Options(
        interactions=interactions,
        soak_seconds=soak_seconds,
        soak_rate=args.soak_rate,
        soak_warmup=(
            args.soak_warmup if args.soak_warmup is not None else min(60.0, soak_seconds / 3)
        ),
        workers=args.workers,
        connections=args.connections,
        latency=args.latency,
        brand_rate=args.brand_rate,
        sample_interval=1.0,
        soak_sample_interval=1.0 if soak_seconds < 120 else 2.0,
    )
    sys.exit(report(asyncio.run(measure(options))))


if __name__ == "__main__":
    main()
