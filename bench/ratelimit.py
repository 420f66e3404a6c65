"""Issue 6 item 5: two workers against a brand limited to R requests/s.

Target: two `service worker` processes delivering to one Qualtrics brand that allows R
requests per second stay at or below 1.05 x R in every 1-second window, as the brand sees the
requests, with fewer than 1 % of the requests answered 429.

Per R (20 and 100; `--rates`), on a stack of its own:

- the fake Qualtrics limits the brand to R requests/s (a token bucket holding one second's
  worth, as `RateLimit(requests_per_second=R)` does) and answers 50 ms after each request;
- both workers limit the brand to R (`CONNECTOR_QUALTRICS_RATE_PER_SECOND`, the limiter they
  share through Redis, default burst and concurrency);
- enough deliveries are stored and enqueued to keep the limiter busy for the whole run
  (`--seconds` plus a margin), then both workers start;
- from the fake's request log (the time each request arrived): the most requests to the brand
  in any 1-second window (every window that starts at a request, so the maximum over all
  sliding windows), and how many were answered 429.

The window is the whole run: from the workers' first request to the last one before they are
stopped (a limiter that bursts on start-up is caught too). `INFO` lines give the achieved rate
(requests per second between the first and the last request), which must be close to R for
the run to mean anything. `--smoke`: shorter runs (< 60 s in all).
"""

import argparse
import asyncio
import bisect
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.harness import Setup, Stack
from bench.report import Figure, exit_with, info

WINDOW_TARGET = 1.05  # x R, in every 1-second window
MAX_429_PERCENT = 1.0
LATENCY = 0.05
RATES = (20.0, 100.0)
# Deliveries queued beyond what the run can send at R, so the queue never runs dry.
QUEUE_MARGIN = 1.5


@dataclass(frozen=True)
class Options:
    rates: tuple[float, ...]
    seconds: float
    workers: int


@dataclass(frozen=True)
class Run:
    rate: float
    requests: int
    rate_limited: int
    max_window: int
    achieved: float
    seconds: float


def max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    """The most events in any half-open window [t, t + width) over sorted `times`."""
    best = 0
    for start, moment in enumerate(times):
        end = bisect.bisect_left(times, moment + width, lo=start)
        best = max(best, end - start)
    return best


async def brand_requests(stack: Stack, since: float) -> list[dict[str, Any]]:
    """The API requests the fake saw from `since` (Unix time) on; token requests are not
    rate limited, at the fake or by the connector."""
    return [
        entry
        for entry in await stack.fake_requests()
        if str(entry["path"]).startswith("/API/") and float(entry["timestamp"]) >= since
    ]


async def run_one(rate: float, options: Options) -> Run:
    async with Stack(database="postgres", fake_latency=LATENCY, fake_rate_limit=rate) as stack:
        setup: Setup = await stack.setup(integrations=1)
        stack.stop_api()  # intake is not part of this
        ids = await stack.plan_deliveries(
            setup, math.ceil(rate * (options.seconds + 5) * QUEUE_MARGIN)
        )
        await stack.enqueue(ids)
        since = time.time()  # the fake's clock is real time on this machine
        await stack.start_workers(
            options.workers,
            qualtrics_rate_per_second=rate,
            # At the end, jobs still waiting for the limiter are cut short, not drained at R.
            job_completion_wait=1,
        )
        started = time.monotonic()
        await asyncio.sleep(options.seconds)
        stack.stop_workers()
        took = time.monotonic() - started
        entries = await brand_requests(stack, since)
        counts = await stack.delivery_counts(setup.organization_id)
    times = sorted(float(entry["timestamp"]) for entry in entries)
    if len(times) < 2:
        raise RuntimeError(f"R={rate:g}: only {len(times)} requests reached the fake")
    limited = sum(1 for entry in entries if entry["status"] == 429)
    span = times[-1] - times[0]
    achieved = (len(times) - 1) / span if span > 0 else 0.0
    info(
        f"ratelimit.r{rate:g}",
        requests=len(times),
        answered_429=limited,
        achieved_rate=achieved,
        utilisation=achieved / rate,
        seconds=took,
        delivered=counts.get("delivered", 0),
        queued=len(ids),
    )
    return Run(rate, len(times), limited, max_in_window(times), achieved, took)


def figures(run: Run, workers: int) -> list[Figure]:
    name = f"ratelimit.r{run.rate:g}"
    note = f"{workers} workers, brand limited to {run.rate:g}/s, fake latency 50 ms"
    return [
        Figure(
            name=f"{name}.max_1s_window",
            value=float(run.max_window),
            unit="/s",
            target=WINDOW_TARGET,
            compare="<=",
            baseline=run.rate,
            note=note,
            extra={"achieved_rate": run.achieved, "requests": run.requests},
        ),
        Figure(
            name=f"{name}.answered_429",
            value=100 * run.rate_limited / run.requests,
            unit="%",
            target=MAX_429_PERCENT,
            compare="<",
            note=note,
            extra={"answered_429": run.rate_limited, "requests": run.requests},
        ),
    ]


async def run(options: Options) -> list[Figure]:
    results: list[Figure] = []
    for rate in options.rates:
        results.extend(figures(await run_one(rate, options), options.workers))
    return results


def parse(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="short runs (< 60 s), for CI")
    parser.add_argument("--rates", type=float, nargs="+", default=list(RATES))
    parser.add_argument("--seconds", type=float, default=30.0, help="per rate")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    seconds = 6.0 if args.smoke else args.seconds
    return Options(tuple(args.rates), seconds, args.workers)


def main(argv: Sequence[str] | None = None) -> None:
    exit_with(asyncio.run(run(parse(argv))))


if __name__ == "__main__":
    main()
