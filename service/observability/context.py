"""The request id of the work in progress, carried from the webhook into the delivery job."""

import re
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_ACCEPTABLE = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def new_request_id(proposed: str | None = None) -> str:
    """The caller's `X-Request-ID` when it is a sane token, else a fresh one."""
    if proposed and _ACCEPTABLE.fullmatch(proposed):
        return proposed
    return uuid.uuid4().hex
