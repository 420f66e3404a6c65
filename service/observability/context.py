"""The request id of the work in progress, carried from the webhook into the delivery job."""

import itertools
import re
import secrets
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def new_request_id(proposed: str | None = None) -> str:
    """The caller's `X-Request-ID` when it is a sane token, else a fresh one."""
    if proposed and _ACCEPTABLE.fullmatch(proposed):
        return proposed
    return f"{_PROCESS}{next(_SEQUENCE):012x}"


# Fresh ids: this process's random prefix and a counter, 32 hex characters like a UUID's but
# without reading the random source per request (ids correlate, they guard nothing).
_PROCESS = secrets.token_hex(10)
_SEQUENCE = itertools.count(1)
