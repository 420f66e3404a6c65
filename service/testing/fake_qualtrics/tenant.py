"""Which datacenter a request is for, and its path without the tenant prefix.

The connector builds URLs from a template such as `http://127.0.0.1:8099/{subdomain}`, so the
fake serves `/{subdomain}/oauth2/token` and `/{subdomain}/API/v3/...`; the subdomain is the
datacenter. Unprefixed `/oauth2/token` and `/API/v3/...` take it from a `{dc}.qualtrics.com`
Host header (for `brand.dc.qualtrics.com` it is `brand.dc`); any other host name is used whole.
"""

from dataclasses import dataclass
from typing import cast

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Scope

SCOPE_KEY = "fake_qualtrics.tenant"
_UNPREFIXED = ("/API/", "/oauth2/")
_QUALTRICS_HOST_SUFFIX = ".qualtrics.com"


@dataclass(frozen=True)
class Tenant:
    datacenter: str
    prefix: str
    path: str


def resolve_tenant(scope: Scope) -> Tenant:
    path: str = scope["path"]
    head, _, rest = path[1:].partition("/")
    if path.startswith(_UNPREFIXED) or not head:
        return Tenant(_datacenter_from_host(Headers(scope=scope)), "", path)
    return Tenant(head, f"/{head}", f"/{rest}")


def route_under_tenant(scope: Scope, tenant: Tenant) -> Scope:
    """The scope the router sees: the prefix moves to `root_path`, so routes match the bare
    path while `request.url` (and with it `nextPage`) keeps the prefix."""
    return {**scope, "root_path": scope.get("root_path", "") + tenant.prefix, SCOPE_KEY: tenant}


def tenant_of(request: Request) -> Tenant:
    return cast(Tenant, request.scope[SCOPE_KEY])


def _datacenter_from_host(headers: Headers) -> str:
    host = headers.get("host", "").rsplit(":", 1)[0].lower()
    return host.removesuffix(_QUALTRICS_HOST_SUFFIX)
