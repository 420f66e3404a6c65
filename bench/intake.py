"""Intake throughput and latency (issue 6, item 1), against a bare endpoint in the same run.

    python -m bench.intake [--smoke]

The product: `service api` (one uvicorn worker) on PostgreSQL and Redis, an organization with
3 enabled integrations of 5 triggers each (one of them matches every interaction: 3 deliveries
per webhook), signed 2 KB `interaction.completed` webhooks, each new. The baseline:
`bench.bare_intake`, which verifies the same signatures with `standardwebhooks` and validates
the same bodies with the same pydantic model, storing nothing, served the same way. Both run
pinned to CPU 0 with `wrk` pinned to CPU 1 (PostgreSQL and Redis float), in alternating
rounds; the figure is the ratio of the medians.

Then an open-model run of the product at half its own maximum rate (paced by the wrk script,
late sends counted) for the p99 latency. Afterwards every acknowledged (202) interaction must
be in the database, and no request may have had any answer but 202.
"""

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import func, select

from bench.harness import PYTHON, Proc, Stack, WebhookFactory, free_port, webhook_path
from bench.report import Figure, info, report
from bench.wrk import WrkResult, run_wrk, write_requests
from service.models import Delivery, Interaction

SERVER_CPU, LOAD_CPU = 0, 1
CONNECTIONS = 64
# Unique webhooks written per round: more than the product can take in that time.
PER_SECOND_CEILING = 7_000


def pin(pid: int, cpu: int) -> None:
    taskset = ["taskset", "-a", "-p", "-c", str(cpu), str(pid)]
    subprocess.run(taskset, check=True, capture_output=True)  # noqa: S603


async def start_bare(stack: Stack, secret: str, workdir: Path) -> tuple[Proc, str]:
    port = free_port()
    env = {**stack.env, "BENCH_WEBHOOK_SECRET": secret}
    proc = Proc(
        "bare-intake",
        [PYTHON, "-m", "bench.bare_intake", "--port", str(port)],
        env=env,
        logfile=workdir / "bare-intake.log",
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        if "Application startup complete" in proc.log():
            return proc, url
        if not proc.alive:
            break
        await asyncio.sleep(0.05)
    raise RuntimeError(f"the bare endpoint did not start:\n{proc.log()}")


def load(
    url: str,
    factory: WebhookFactory,
    workdir: Path,
    *,
    seconds: float,
    rate: float = 0,
    connections: int = CONNECTIONS,
) -> WrkResult:
    count = int(PER_SECOND_CEILING * (seconds + 1)) if not rate else int(rate * (seconds + 2))
    requests = workdir / "requests.bin"
    write_requests(requests, factory.many(count))
    try:
        return run_wrk(
            url, requests, seconds=seconds, connections=connections, rate=rate, cpu=LOAD_CPU
        )
    finally:
        requests.unlink()


async def stored_interactions(stack: Stack) -> tuple[int, int]:
    async with stack.sessionmaker() as session:
        interactions = await session.scalar(select(func.count()).select_from(Interaction))
        deliveries = await session.scalar(select(func.count()).select_from(Delivery))
    return int(interactions or 0), int(deliveries or 0)


async def measure(smoke: bool) -> list[Figure]:
    rounds, seconds, warmup, open_seconds = (1, 3, 1, 4) if smoke else (3, 10, 2, 15)
    async with Stack(database="postgres") as stack:
        setup = await stack.setup(integrations=3, triggers_per_integration=5, fields=20)
        if stack.api_process is None:
            raise RuntimeError("the setup did not start the api")
        workdir = Path(tempfile.mkdtemp(prefix="bench-intake-", dir=stack.workdir))
        bare, bare_url = await start_bare(stack, setup.webhook_secret, workdir)
        pin(stack.api_process.pid, SERVER_CPU)
        pin(bare.pid, SERVER_CPU)
        factory = WebhookFactory(setup.webhook_secret)
        path = webhook_path(setup)
        product_url, bare_url = stack.api_url + path, bare_url + path

        runs: dict[str, list[WrkResult]] = {"product": [], "bare": []}
        product_runs: list[WrkResult] = []
        for _ in range(rounds):
            for name, url in (("bare", bare_url), ("product", product_url)):
                warm = load(url, factory, workdir, seconds=warmup)
                result = load(url, factory, workdir, seconds=seconds)
                runs[name].append(result)
                if name == "product":
                    product_runs += [warm, result]
                info(
                    f"intake_round_{name}",
                    rate=round(result.rate),
                    p50_ms=result.p50_ms,
                    p99_ms=result.p99_ms,
                    non_202=result.other + result.errors,
                )
        product = statistics.median(run.rate for run in runs["product"])
        baseline = statistics.median(run.rate for run in runs["bare"])

        # The open model: half the product's own maximum, paced; enough connections that a
        # send never waits for a connection (each has ~4 s / rate of slack).
        paced_rate = product / 2
        paced = load(
            product_url,
            factory,
            workdir,
            seconds=open_seconds,
            rate=paced_rate,
            connections=max(64, min(1000, int(paced_rate * 0.2))),
        )
        product_runs.append(paced)
        stored, deliveries = await stored_interactions(stack)
        acknowledged = sum(run.accepted for run in product_runs)
        not_202 = sum(run.other + run.errors for run in product_runs) + sum(
            run.other + run.errors for run in runs["bare"]
        )
        api_rss = stack.api_process.rss_mib()
        bare.stop()

    return [
        Figure(
            "intake_throughput",
            product,
            " req/s",
            0.60,
            ">=",
            baseline=baseline,
            note="PostgreSQL, Redis, 3 integrations x 5 triggers vs bare verify+validate",
            extra={"rounds": rounds, "seconds": seconds},
        ),
        Figure(
            "intake_open_model_p99",
            paced.p99_ms,
            " ms",
            50,
            "<=",
            note=f"at {paced_rate:.0f}/s (half the max), p50 {paced.p50_ms:.1f} ms",
            extra={
                "achieved_rate": round(paced.rate),
                "late_sends": paced.late,
                "p999_ms": paced.p999_ms,
            },
        ),
        Figure("intake_non_202_answers", not_202, "", 0, "<=", guarantee=True),
        Figure(
            "intake_acknowledged_not_stored",
            max(0, acknowledged - stored),
            "",
            0,
            "<=",
            guarantee=True,
            extra={
                "acknowledged": acknowledged,
                "stored": stored,
                "deliveries": deliveries,
                "api_rss_mib": round(api_rss),
            },
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="one short round (CI)")
    args = parser.parse_args()
    sys.exit(report(asyncio.run(measure(args.smoke))))


if __name__ == "__main__":
    main()
