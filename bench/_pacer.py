"""A webhook sender that records when each webhook was acknowledged, paced or closed-model.

Used by `bench.e2e` and `bench.memory`. wrk paces cheaper, but it cannot say *which*
webhook a response belongs to (end-to-end latency needs the 202's time per interaction id),
and a long run would need a pre-signed file of hundreds of MB; here each webhook can be
signed when it is due (`on_the_fly`, a few µs).

`WebhookSender.paced`: sends go out on a fixed schedule (slot i at `start + i / rate`), each
as its own task, never waiting for an earlier answer: a slow server makes requests pile up
in flight (more connections), not sends come later. A send that starts more than
`LATE_AFTER` after its slot is counted as late, like `bench/lua/webhooks.lua` does, so a
sender that could not keep its schedule shows in the figures. `WebhookSender.closed`: N
connections each send the next webhook as soon as the previous answer is in (as fast as the
server takes them).

The HTTP/1.1 client is a few lines over asyncio streams (keep-alive connections, reused from
an idle pool, opened on demand), far cheaper per request than httpx: on two cores the
sender's CPU is taken from the processes under test.

`CpuWindow` says how busy the machine was meanwhile, and with what: on a small shared machine
the load of other processes must show next to the figures.
"""

import asyncio
import functools
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from bench.harness import Proc, WebhookFactory

# A send that starts more than this after its slot is late (as in bench/lua/webhooks.lua).
LATE_AFTER = 0.002
REQUEST_TIMEOUT = 30.0
# uvicorn closes a keep-alive connection after 5 s idle: never reuse one idle that long.
MAX_IDLE = 3.0


@dataclass
class Sent:
    """One webhook: its interaction id, when it was due and sent, and what came back."""

    interaction_id: str
    slot: float  # monotonic: when the schedule said to send it
    started: float  # monotonic: when it was sent
    answered: float = 0.0  # monotonic: when the whole answer had been read
    ack_wall: float = 0.0  # time.time() when the whole answer had been read
    status: int | None = None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 202

    @property
    def latency(self) -> float:
        return self.answered - self.started


@dataclass
class SendRun:
    """What a run sent: counts always; every `Sent` if asked to keep them, else the failures."""

    rate: float  # the schedule's; 0 for a closed-model run
    count: int = 0
    accepted: int = 0
    sent: list[Sent] = field(default_factory=list)
    failures: list[Sent] = field(default_factory=list)
    seconds: float = 0.0  # from the first slot to the last answer
    send_seconds: float = 0.0  # from the first slot to the last send
    late: int = 0
    max_lateness: float = 0.0
    connections_opened: int = 0
    max_in_flight: int = 0

    def tally(self, item: Sent) -> None:
        if item.accepted:
            self.accepted += 1
        else:
            self.failures.append(item)

    @property
    def not_accepted(self) -> int:
        return self.count - self.accepted

    @property
    def achieved_rate(self) -> float:
        """Sends per second over the sending window (the schedule's rate if it was kept)."""
        return (self.count - 1) / self.send_seconds if self.send_seconds else 0.0


def encode_request(host: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """The raw HTTP/1.1 request for a signed webhook (`WebhookFactory.make`'s output)."""
    lines = [
        f"POST {path} HTTP/1.1",
        f"host: {host}",
        "content-type: application/json",
        f"webhook-id: {headers['webhook-id']}",
        f"webhook-timestamp: {headers['webhook-timestamp']}",
        f"webhook-signature: {headers['webhook-signature']}",
        f"content-length: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = time.monotonic()
        self.used = False

    def reusable(self) -> bool:
        fresh = time.monotonic() - self.idle_since < MAX_IDLE
        return fresh and not self.reader.at_eof() and not self.writer.is_closing()

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send one request, read its whole answer: (status, keep the connection)."""
        self.used = True
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        chunked = False
        keep = True
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                keep = False
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status, keep

    def close(self) -> None:
        self.writer.close()


class WebhookSender:
    """Send webhooks to `http://host:port`; see the module docstring."""

    def __init__(self, host: str, port: int, path: str, *, warm_connections: int = 16) -> None:
        self.host, self.port, self.path = host, port, path
        self._idle: list[_Connection] = []
        self._warm = warm_connections
        self._opened = 0
        self._in_flight = 0
        self._max_in_flight = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @classmethod
    def for_url(cls, base_url: str, path: str) -> Self:
        host, _, port = base_url.removeprefix("http://").partition(":")
        return cls(host, int(port), path)

    async def _open(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self._opened += 1
        return _Connection(reader, writer)

    async def warm_up(self) -> None:
        """Open the first connections before the clock starts."""
        while len(self._idle) < self._warm:
            self._idle.append(await self._open())

    async def _connection(self) -> _Connection:
        """The most recently used idle connection that is still good, else a new one."""
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable():
                return connection
            connection.close()
        return await self._open()

    async def aclose(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    async def _send(self, item: Sent, request: bytes) -> None:
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                connection = await self._connection()
                reused = connection.used
                try:
                    status, keep = await connection.exchange(request)
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                        raise
                    # A kept-alive connection the server closed meanwhile: once more on a new
                    # one (safe: a repeated webhook-id is answered as a duplicate).
                    connection.close()
                    connection = await self._open()
                    status, keep = await connection.exchange(request)
            item.answered, item.ack_wall = time.monotonic(), time.time()
            item.status = status
            if keep:
                connection.idle_since = item.answered
                self._idle.append(connection)
            else:
                connection.close()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            item.answered, item.ack_wall = time.monotonic(), time.time()
            item.error = f"{type(exc).__name__}: {exc}"
            if connection is not None:
                connection.close()
        finally:
            self._in_flight -= 1

    async def paced(
        self,
        rate: float,
        count: int,
        make: Callable[[int], tuple[str, bytes]],
        *,
        keep: bool = True,
        on_progress: Callable[[int], None] | None = None,
    ) -> SendRun:
        """Send `count` webhooks at `rate`/s; `make(i)` gives the i-th (interaction id, raw
        request). `keep=False` keeps only the counts and failures (a long soak), not every
        `Sent`; `on_progress(i)` is called every 1000 sends."""
        await self.warm_up()
        run = SendRun(rate=rate, count=count)
        tasks: set[asyncio.Task[None]] = set()

        def finished(task: asyncio.Task[None], item: Sent) -> None:
            tasks.discard(task)
            run.tally(item)

        interval = 1.0 / rate
        start = time.monotonic() + 0.05
        for index in range(count):
            interaction_id, request = make(index)
            slot = start + index * interval
            delay = slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            began = time.monotonic()
            lateness = began - slot
            if lateness > LATE_AFTER:
                run.late += 1
            run.max_lateness = max(run.max_lateness, lateness)
            item = Sent(interaction_id=interaction_id, slot=slot, started=began)
            if keep:
                run.sent.append(item)
            task = asyncio.create_task(self._send(item, request))
            tasks.add(task)
            task.add_done_callback(functools.partial(finished, item=item))
            if on_progress is not None and index % 1000 == 0:
                on_progress(index)
        run.send_seconds = time.monotonic() - start
        if tasks:
            await asyncio.gather(*tasks)
        run.seconds = time.monotonic() - start
        run.connections_opened = self._opened
        run.max_in_flight = self._max_in_flight
        return run

    async def closed(
        self,
        count: int,
        make: Callable[[int], tuple[str, bytes]],
        *,
        connections: int = 32,
        on_progress: Callable[[int], None] | None = None,
    ) -> SendRun:
        """Send `count` webhooks over `connections` concurrent loops, each sending its next
        one when the previous answer is in; only counts and failures are kept."""
        run = SendRun(rate=0.0, count=count)
        position = iter(range(count))
        start = time.monotonic()

        async def loop() -> None:
            for index in position:
                interaction_id, request = make(index)
                now = time.monotonic()
                item = Sent(interaction_id=interaction_id, slot=now, started=now)
                await self._send(item, request)
                run.tally(item)
                if on_progress is not None and index % 1000 == 0:
                    on_progress(index)

        await asyncio.gather(*(loop() for _ in range(connections)))
        run.seconds = run.send_seconds = time.monotonic() - start
        run.connections_opened = self._opened
        run.max_in_flight = self._max_in_flight
        return run


def on_the_fly(
    factory: WebhookFactory, host: str, path: str, prefix: str
) -> Callable[[int], tuple[str, bytes]]:
    """A `make` that signs each webhook when it is due (a few µs), for long runs."""

    def make(index: int) -> tuple[str, bytes]:
        interaction_id = f"call-{prefix}-{index:08d}"
        headers, body = factory.make(interaction_id=interaction_id)
        return interaction_id, encode_request(host, path, headers, body)

    return make


class CpuWindow:
    """CPU use over a window, in cores: the whole machine's (/proc/stat) and every process's
    (/proc/PID/stat, whether it is the stack's, PostgreSQL's, this process's or anyone
    else's), so a run can tell its own load from a machine it shared. "interrupts" is hard and
    soft interrupt time (loopback networking, mostly); "unattributed" what no process still
    running was charged with: mostly processes that ended within the window (a few hundredths
    below zero when there were none: per-process and machine ticks are sampled apart)."""

    def __init__(self, processes: Sequence[Proc]) -> None:
        self._names = {proc.pid: proc.name for proc in processes}
        self._names[os.getpid()] = "load_generator"
        self._wall = time.monotonic()
        self._machine = machine_busy_seconds()
        self._interrupts = interrupt_seconds()
        self._before = _process_seconds()

    def cores(self, *, others: int = 3) -> dict[str, float]:
        """Cores busy: the machine, each stack process, this process, PostgreSQL, all other
        processes and the `others` busiest of them, and the unattributed rest."""
        wall = time.monotonic() - self._wall
        busy = (machine_busy_seconds() - self._machine) / wall
        interrupts = (interrupt_seconds() - self._interrupts) / wall
        used: dict[str, float] = {}
        for pid, (command, seconds) in _process_seconds().items():
            spent = seconds - self._before.get(pid, (command, 0.0))[1]
            name = self._names.get(pid) or ("postgres" if command == "postgres" else command)
            used[name] = used.get(name, 0.0) + spent / wall
        ours = {name: used.pop(name, 0.0) for name in [*self._names.values(), "postgres"]}
        rest = sorted(used.items(), key=lambda item: -item[1])
        figures = {
            "machine_busy": busy,
            "machine_cores": float(os.cpu_count() or 0),
            **ours,
            "others_total": sum(used.values()),
            **{f"other:{name}": value for name, value in rest[:others]},
            "interrupts": interrupts,
            "unattributed": busy - interrupts - sum(ours.values()) - sum(used.values()),
        }
        return {name: round(value, 2) for name, value in figures.items()}


def _process_seconds() -> dict[int, tuple[str, float]]:
    """Every process's command name and CPU seconds (user + system) so far."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdecimal():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        command = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        found[int(entry.name)] = (command, (int(fields[11]) + int(fields[12])) / tick)
    return found


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (neither idle nor waiting for I/O)."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def interrupt_seconds() -> float:
    """CPU seconds all cores spent in hard and soft interrupts since boot."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().split()[1:9]]
    return (ticks[5] + ticks[6]) / os.sysconf("SC_CLK_TCK")
