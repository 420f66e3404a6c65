"""The ASGI layer in front of the API routes: tenant resolution, request log and faults.

Control requests (`/_fake/...`) pass straight through. An API request is matched against the
injected faults twice: a `before` fault answers instead of the API (a `hang` delays it), an
`after` fault lets the API run, so its state changes happen, and then replaces or delays the
answer, which is how a test produces "created, but the client saw a 504 or a dropped
connection".
"""

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import Fault, FaultKind, FaultPhase
from .faults import send_fault
from .state import FakeQualtrics, RequestRecord
from .tenant import Tenant, resolve_tenant, route_under_tenant

CONTROL_PREFIX = "/_fake/"


class _Recorder:
    """Forwards (or buffers) what the app sends and remembers the status."""

    def __init__(self, send: Send, *, buffer: bool) -> None:
        self._send = send
        self._buffer: list[Message] | None = [] if buffer else None
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        if self._buffer is None:
            await self._send(message)
        else:
            self._buffer.append(message)

    async def replay(self) -> None:
        for message in self._buffer or []:
            await self._send(message)


class _Outcome:
    """What the client got, filled in as the request goes, so a dropped connection is recorded
    too."""

    status: int | None = None
    fault: Fault | None = None


class FakeQualtricsMiddleware:
    def __init__(self, app: ASGIApp, fake: FakeQualtrics) -> None:
        self.app = app
        self.fake = fake

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        tenant = resolve_tenant(scope)
        outcome = _Outcome()
        started = self.fake.now()
        try:
            await self._serve(route_under_tenant(scope, tenant), receive, send, tenant, outcome)
        finally:
            self.fake.record(
                RequestRecord(
                    at=started,
                    method=scope["method"],
                    path=tenant.path,
                    datacenter=tenant.datacenter,
                    status=outcome.status,
                    fault=None if outcome.fault is None else outcome.fault.kind.value,
                )
            )

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, tenant: Tenant, outcome: _Outcome
    ) -> None:
        where = {"method": scope["method"], "path": tenant.path, "datacenter": tenant.datacenter}
        before = self.fake.faults.take(FaultPhase.BEFORE, **where)
        outcome.fault = before
        if before is not None and before.kind is not FaultKind.HANG:
            outcome.status = _fault_status(before)
            await send_fault(before, receive, send)
            return
        if before is not None:
            await asyncio.sleep(before.seconds)
        after = self.fake.faults.take(FaultPhase.AFTER, **where)
        recorder = _Recorder(send, buffer=after is not None)
        await self.app(scope, receive, recorder)
        outcome.status = recorder.status
        if after is None:
            return
        outcome.fault = after
        if after.kind is FaultKind.HANG:
            await asyncio.sleep(after.seconds)
            await recorder.replay()
            return
        outcome.status = _fault_status(after)
        await send_fault(after, receive, send)


def _fault_status(fault: Fault) -> int | None:
    """The status the client saw: none for a dropped connection."""
    return {
        FaultKind.STATUS: fault.status,
        FaultKind.REDIRECT: 302,
        FaultKind.BODY: 200,
    }.get(fault.kind)
