"""Load from `wrk` (Debian's package): closed-model maximum rate, or an open-model schedule.

The requests are signed ahead of time and written to a file that `bench/lua/webhooks.lua`
loads, so the load generator spends its CPU on HTTP, not on HMACs, and every request is a
new webhook (a repeated one would be a cheap duplicate, flattering the product). wrk itself
measures latency from each send to its response; in paced mode the script sends on a fixed
schedule and counts sends that started late, so a stalled server cannot hide its queueing
(coordinated omission) without it showing in `late`.
"""

import json
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

LUA = Path(__file__).parent / "lua" / "webhooks.lua"


class WrkMissingError(RuntimeError):
    pass


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise WrkMissingError(
            "wrk is not installed: `apt-get install -y wrk` (Debian's package), then run again"
        )
    return found


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    accepted: int  # 202s
    other: int  # any other status
    other_statuses: dict[str, int]
    errors: int  # connect/read/write errors and timeouts
    late: int
    exhausted: bool
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def write_requests(path: Path, requests: Iterable[tuple[dict[str, str], bytes]]) -> int:
    """The file the Lua script reads: a tab-separated header line, then the body."""
    count = 0
    with path.open("wb") as out:
        for headers, body in requests:
            out.write(
                "\t".join(
                    (
                        headers["webhook-id"],
                        headers["webhook-timestamp"],
                        headers["webhook-signature"],
                        str(len(body)),
                    )
                ).encode()
                + b"\n"
                + body
                + b"\n"
            )
            count += 1
    return count


def run_wrk(
    url: str,
    requests_file: Path,
    *,
    seconds: float,
    connections: int,
    rate: float = 0,
    threads: int = 1,
    cpu: int | None = None,
    timeout_seconds: int = 10,
) -> WrkResult:
    """One wrk run; `rate` > 0 paces it (open model), else as fast as it goes (closed)."""
    argv = [
        wrk_binary(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout_seconds}s",
        "-s",
        str(LUA),
        url,
        "--",
        str(requests_file),
        str(rate),
        str(threads),
    ]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    finished = subprocess.run(  # noqa: S603 (wrk, our arguments)
        argv, capture_output=True, text=True, timeout=seconds + 120, check=False
    )
    line = next((line for line in finished.stdout.splitlines() if line.startswith("WRK ")), None)
    if finished.returncode != 0 or line is None:
        raise RuntimeError(
            f"wrk failed ({finished.returncode}): {finished.stdout}{finished.stderr}"
        )
    data = json.loads(line.removeprefix("WRK "))
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        accepted=data["accepted"],
        other=data["other"],
        other_statuses=data["other_statuses"],
        errors=sum(
            data[key] for key in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        late=data["late"],
        exhausted=bool(data["exhausted"]),
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        p999_ms=data["p999_us"] / 1000,
        max_ms=data["max_us"] / 1000,
    )
