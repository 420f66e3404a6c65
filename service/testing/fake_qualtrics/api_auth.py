"""`POST /oauth2/token` (client credentials) and `GET /API/v3/whoami` (qualtrics-api.md §2, §3).

The token endpoint takes HTTP Basic client authentication and a form body (urlencoded or
multipart) with `grant_type=client_credentials` and an optional space-separated `scope`.
It answers `{"access_token", "token_type": "Bearer", "expires_in", "scope"}`. Credentials sent
in the form body instead of Basic are refused [U]. Errors are RFC 6749 bodies [U]: 401
`invalid_client`, 400 `invalid_request`, `unsupported_grant_type` or `invalid_scope`.
A datacenter where no account lives stands for a subdomain that is not a Qualtrics host: its
token endpoint answers 404 [U].
"""

import base64
import binascii

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .accounts import OAuthError
from .context import ApiContext, api_endpoint, fake_of
from .envelope import error_response, not_found, ok
from .tenant import tenant_of


async def issue_token(request: Request) -> Response:
    fake = fake_of(request)
    datacenter = tenant_of(request).datacenter
    if not fake.accounts.serves(datacenter):
        return error_response(not_found(f"Unknown datacenter {datacenter!r}"))
    client_id, client_secret = _basic_credentials(request.headers.get("authorization", ""))
    async with request.form() as form:
        grant_type, scope = form.get("grant_type"), form.get("scope")
    if not isinstance(grant_type, str):
        raise OAuthError(400, "invalid_request", "grant_type is required (form-encoded body)")
    if grant_type != "client_credentials":
        raise OAuthError(400, "unsupported_grant_type", f"Unsupported grant_type {grant_type!r}")
    if scope is not None and not isinstance(scope, str):
        raise OAuthError(400, "invalid_request", "scope must be a string")
    await fake.simulate_latency()
    token = fake.issue_token(
        client_id, client_secret, datacenter=tenant_of(request).datacenter, scope=scope
    )
    body = {
        "access_token": token.value,
        "token_type": "Bearer",
        "expires_in": fake.config.token_ttl_seconds,
        "scope": token.scope,
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def _basic_credentials(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    client_id, colon, client_secret = decoded.partition(":")
    if scheme.lower() != "basic" or not colon or not client_id:
        raise OAuthError(401, "invalid_client", "HTTP Basic client authentication is required")
    return client_id, client_secret


@api_endpoint
def whoami(ctx: ApiContext) -> Response:
    return ok(ctx.account.whoami())
