"""Injected faults: which request gets one, and how each kind is sent at the ASGI level."""

import asyncio
import json
import uuid
from collections.abc import Iterator

import httpx
from starlette.types import Message, Receive, Send

from .config import Fault, FaultKind, FaultPhase
from .envelope import QualtricsError, error_body

_CHUNK_SIZE = 64 * 1024
_FILL = b"x" * _CHUNK_SIZE
_BODY_PREFIX = b'{"result":{"padding":"'
_BODY_SUFFIX = b'"},"meta":{"httpStatus":"200 - OK"}}'
_RESET_PROMISED_LENGTH = b"1024"


class SimulatedConnectionReset(httpx.RemoteProtocolError):
    """Raised after the status line and headers went out, so the server drops the connection.

    Over a socket, uvicorn closes it (and logs the exception) and the client's read of the body
    fails with `httpx.RemoteProtocolError`. In process, `httpx.ASGITransport` re-raises it to the
    client; it subclasses that same httpx error so in-process clients see the same failure.
    """


class FaultInjector:
    """Faults in the order they were injected; the first match wins and is used up."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def pending(self) -> list[Fault]:
        return [fault.model_copy() for fault in self._faults]

    def take(self, phase: FaultPhase, *, method: str, path: str, datacenter: str) -> Fault | None:
        for fault in self._faults:
            if fault.phase is phase and fault.matches(method, path, datacenter):
                if fault.count == 1:
                    self._faults.remove(fault)
                elif fault.count is not None:
                    fault.count -= 1
                return fault
        return None


async def send_fault(fault: Fault, receive: Receive, send: Send) -> None:
    """Answer with the fault instead of the real response (every kind but `hang`)."""
    if fault.kind is FaultKind.STATUS:
        await _send_status(fault, send)
    elif fault.kind is FaultKind.REDIRECT:
        await _send_start(send, 302, [(b"location", fault.location.encode())])
        await send({"type": "http.response.body", "body": b""})
    elif fault.kind is FaultKind.RESET:
        await _send_start(send, 200, [(b"content-length", _RESET_PROMISED_LENGTH)])
        raise SimulatedConnectionReset("fake Qualtrics dropped the connection (injected fault)")
    elif fault.kind is FaultKind.BODY:
        await _send_big_body(fault.body_bytes, receive, send)


async def _send_status(fault: Fault, send: Send) -> None:
    error = QualtricsError(
        fault.status,
        fault.error_message or "Injected fault",
        code=fault.error_code,
        instance_id=uuid.uuid4().hex if fault.status >= 500 else None,
    )
    body = json.dumps(error_body(error)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if fault.retry_after is not None:
        headers.append((b"retry-after", b"%d" % fault.retry_after))
    await _send_start(send, fault.status, headers)
    await send({"type": "http.response.body", "body": body})


async def _send_start(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _send_big_body(size: int | None, receive: Receive, send: Send) -> None:
    """A JSON-looking 200 body of `size` bytes, or an endless one until the client leaves."""
    headers = [(b"content-type", b"application/json")]
    if size is not None:
        headers.append((b"content-length", b"%d" % size))
    await _send_start(send, 200, headers)
    disconnected = asyncio.Event()
    watcher = asyncio.create_task(_wait_for_disconnect(receive, disconnected))
    try:
        for chunk in _body_chunks(size):
            if disconnected.is_set():
                return
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})
    finally:
        watcher.cancel()


async def _wait_for_disconnect(receive: Receive, disconnected: asyncio.Event) -> None:
    message: Message = {}
    while message.get("type") != "http.disconnect":
        message = await receive()
    disconnected.set()


def _body_chunks(size: int | None) -> Iterator[bytes]:
    if size is None:
        yield _BODY_PREFIX
        while True:
            yield _FILL
    fill = size - len(_BODY_PREFIX) - len(_BODY_SUFFIX)
    if fill < 0:
        yield _FILL[:size]
        return
    yield _BODY_PREFIX
    whole, rest = divmod(fill, _CHUNK_SIZE)
    for _ in range(whole):
        yield _FILL
    yield _FILL[:rest]
    yield _BODY_SUFFIX
