"""The Qualtrics v3 JSON envelope and the errors rendered with it (qualtrics-api.md §3, §6.2).

Success: `{"result": ..., "meta": {"httpStatus": "200 - OK", "requestId": "<uuid>"}}`, or `meta`
alone when there is nothing to return. Error: `meta.error{errorCode, errorMessage}` (plus
`instanceId` on 5xx) and no `result`.

Error codes: 401 `AUTH_6.0` / `DCD_7`, 403 `MSTC_3`, 404 `QMST_2.2` and 400/500 `MSTC_1` are the
spec's examples [S]. The spec uses `MSTC_1` for any invalid request, so every 400 here carries it
with a specific message. The 429 code `RATE_LIMIT_EXCEEDED` is made up [U].
"""

import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.responses import JSONResponse

JsonObject = dict[str, Any]

INVALID_REQUEST = "MSTC_1"
INVALID_CLIENT = "AUTH_6.0"
UNRECOGNIZED_API_CREDENTIAL = "DCD_7"
FORBIDDEN = "MSTC_3"
NOT_FOUND = "QMST_2.2"
RATE_LIMITED = "RATE_LIMIT_EXCEEDED"
SERVER_ERROR = "MSTC_1"

NOT_FOUND_MESSAGE = "The requested resource could not be found"

_DEFAULT_CODES = {400: INVALID_REQUEST, 401: INVALID_CLIENT, 403: FORBIDDEN, 404: NOT_FOUND}


class QualtricsError(Exception):
    """An error answer: raised anywhere in a handler, rendered as the error envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        instance_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or default_error_code(status)
        self.instance_id = instance_id
        self.headers = dict(headers or {})


def default_error_code(status: int) -> str:
    """The code used when a caller does not name one; every 5xx gets the spec's `MSTC_1`."""
    if status == 429:
        return RATE_LIMITED
    return _DEFAULT_CODES.get(status, SERVER_ERROR if status >= 500 else INVALID_REQUEST)


def bad_request(message: str) -> QualtricsError:
    return QualtricsError(400, message)


def not_found(message: str = NOT_FOUND_MESSAGE) -> QualtricsError:
    return QualtricsError(404, message)


def http_status_text(status: int) -> str:
    """`meta.httpStatus`: a string such as `"404 - Not Found"`."""
    return f"{status} - {HTTPStatus(status).phrase}"


def new_meta(status: int) -> JsonObject:
    return {"httpStatus": http_status_text(status), "requestId": str(uuid.uuid4())}


def error_body(error: QualtricsError) -> JsonObject:
    detail: JsonObject = {"errorCode": error.code, "errorMessage": error.message}
    if error.instance_id is not None:
        detail["instanceId"] = error.instance_id
    return {"meta": {**new_meta(error.status), "error": detail}}


def ok(result: object = None, status: int = 200) -> JSONResponse:
    """A success envelope; `result=None` gives the `meta`-only body of PUT and DELETE."""
    body: JsonObject = {"meta": new_meta(status)}
    if result is not None:
        body = {"result": result, **body}
    return JSONResponse(body, status_code=status)


def error_response(error: QualtricsError) -> JSONResponse:
    return JSONResponse(error_body(error), status_code=error.status, headers=error.headers)
