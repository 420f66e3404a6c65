"""Accounts (OAuth clients of a brand), their access tokens and API tokens (qualtrics-api.md §2).

* A client's credentials work only at the token endpoint of its own datacenter (the subdomain in
  the path, or the host), and its access tokens only at that datacenter's API [S: whoami "must be
  made against the datacenter where the token was generated"; extended to every call].
* An `X-API-TOKEN` works at any datacenter [U: real calls to another host are proxied].
* The token endpoint's error bodies follow RFC 6749 (`{"error": "invalid_client"}`) [U].
* Scopes: an account with `scopes=None` is granted whatever it asks for; otherwise a requested
  scope outside its list is `invalid_scope`. Routes do not check scopes [U].
"""

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TypedDict

from .envelope import INVALID_CLIENT, UNRECOGNIZED_API_CREDENTIAL, JsonObject, QualtricsError
from .spec import new_id


class OAuthError(Exception):
    """An error of the token endpoint, rendered as an RFC 6749 body, not the v3 envelope."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> JsonObject:
        return {"error": self.error, "error_description": self.description}


class AccountProfile(TypedDict, total=False):
    """The optional user details of an account, as `/whoami` shows them."""

    user_id: str
    user_name: str
    account_type: str
    first_name: str
    last_name: str
    email: str


@dataclass
class Account:
    """An OAuth client of a brand and the user it acts as (what `/whoami` shows)."""

    client_id: str
    client_secret: str = field(repr=False)
    datacenter: str
    brand_id: str
    user_id: str = field(default_factory=lambda: new_id("UR_"))
    user_name: str = ""
    account_type: str = "UT_BRANDADMIN"
    first_name: str = "API"
    last_name: str = "User"
    email: str = ""
    api_token: str | None = field(default=None, repr=False)
    scopes: frozenset[str] | None = None
    active: bool = True

    def __post_init__(self) -> None:
        self.user_name = self.user_name or f"{self.client_id}#{self.brand_id}"
        self.email = self.email or f"{self.client_id}@{self.brand_id}.example"

    def whoami(self) -> JsonObject:
        return {
            "brandId": self.brand_id,
            "userId": self.user_id,
            "userName": self.user_name,
            "accountType": self.account_type,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "email": self.email,
            "datacenter": self.datacenter,
        }

    def as_json(self) -> JsonObject:
        return {
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "api_token": self.api_token,
            "scopes": None if self.scopes is None else sorted(self.scopes),
            "active": self.active,
            **self.whoami(),
        }


@dataclass(frozen=True)
class IssuedToken:
    value: str = field(repr=False)
    client_id: str
    datacenter: str
    expires_at: datetime
    scope: str


class AccountRegistry:
    """Accounts by client id, and the access tokens issued to them."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self._tokens: dict[str, IssuedToken] = {}

    def serves(self, datacenter: str) -> bool:
        """Whether any account lives at `datacenter`: the fake's stand-in for a real host."""
        return any(account.datacenter == datacenter for account in self.accounts.values())

    def register(self, account: Account) -> Account:
        if account.client_id in self.accounts:
            raise ValueError(f"client_id {account.client_id!r} is already registered")
        self.accounts[account.client_id] = account
        return account

    def issue_token(
        self,
        *,
        client_id: str,
        client_secret: str,
        datacenter: str,
        requested_scope: str | None,
        now: datetime,
        ttl_seconds: int,
    ) -> IssuedToken:
        account = self.accounts.get(client_id)
        if (
            account is None
            or not account.active
            or account.datacenter != datacenter
            or not secrets.compare_digest(account.client_secret, client_secret)
        ):
            raise OAuthError(401, "invalid_client", "Client authentication failed")
        token = IssuedToken(
            value=secrets.token_urlsafe(32),
            client_id=client_id,
            datacenter=datacenter,
            expires_at=now + timedelta(seconds=ttl_seconds),
            scope=_granted_scope(account, requested_scope),
        )
        self._tokens[token.value] = token
        return token

    def by_bearer(self, value: str, *, datacenter: str, now: datetime) -> Account:
        token = self._tokens.get(value)
        if token is None or token.datacenter != datacenter or token.expires_at <= now:
            raise QualtricsError(401, "invalid_client", code=INVALID_CLIENT)
        return self.accounts[token.client_id]

    def by_api_token(self, value: str) -> Account:
        for account in self.accounts.values():
            token = account.api_token
            if account.active and token is not None and secrets.compare_digest(token, value):
                return account
        raise QualtricsError(401, "Unrecognized X-API-TOKEN.", code=UNRECOGNIZED_API_CREDENTIAL)

    def revoke_tokens(self, client_id: str) -> int:
        """Invalidate every access token of the client; return how many there were."""
        revoked = [key for key, token in self._tokens.items() if token.client_id == client_id]
        for key in revoked:
            del self._tokens[key]
        return len(revoked)

    def revoke_credentials(self, client_id: str) -> None:
        """Disable the client: its tokens stop working and no new ones are issued."""
        self.accounts[client_id].active = False
        self.revoke_tokens(client_id)


def _granted_scope(account: Account, requested: str | None) -> str:
    wanted = (requested or "").split()
    if account.scopes is None:
        return " ".join(wanted)
    unknown = [scope for scope in wanted if scope not in account.scopes]
    if unknown:
        raise OAuthError(400, "invalid_scope", f"Scope not allowed: {' '.join(unknown)}")
    return " ".join(wanted or sorted(account.scopes))
