"""`FakeQualtrics`: all state of the fake, and the Python control surface tests use.

The fake runs on one event loop. Handlers do all their awaiting (reading the body, simulated
latency) before they touch state, and no state method awaits, so each request's
check-then-write is atomic with respect to other requests. Control it from the same loop (an
in-process test) or over HTTP (`/_fake/...`), not from another thread.
"""

import asyncio
import copy
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Unpack

from starlette.datastructures import Headers

from .accounts import Account, AccountProfile, AccountRegistry, IssuedToken
from .clock import FakeClock, iso
from .config import FakeQualtricsConfig, Fault, RateLimit
from .envelope import INVALID_CLIENT, JsonObject, QualtricsError, bad_request, not_found
from .faults import FaultInjector
from .limits import RateLimiter
from .spec import SURVEY_ID, IdFormat
from .surveys import StoredResponse, Survey


@dataclass(frozen=True)
class RequestRecord:
    """One API request as the fake saw it (control requests are not recorded).

    `at` is when it arrived, on the fake clock; in JSON it is Qualtrics' whole-second ISO form,
    and `timestamp` the same moment in Unix seconds to the microsecond (for rates and windows).
    """

    at: datetime
    method: str
    path: str
    datacenter: str
    status: int | None
    fault: str | None

    def as_json(self) -> JsonObject:
        return {**self.__dict__, "at": iso(self.at), "timestamp": self.at.timestamp()}


@dataclass
class RequestStats:
    total: int = 0
    by_status: Counter[int] = field(default_factory=Counter)

    @property
    def rate_limited(self) -> int:
        return self.by_status[429]

    def as_json(self) -> JsonObject:
        return {
            "total": self.total,
            "by_status": {str(status): count for status, count in sorted(self.by_status.items())},
            "rate_limited": self.rate_limited,
        }


class FakeQualtrics:
    """The fake's state plus its control and inspection API."""

    clock: FakeClock
    accounts: AccountRegistry
    faults: FaultInjector
    limiter: RateLimiter
    stats: RequestStats
    request_log: deque[RequestRecord]
    _surveys: dict[str, Survey]

    def __init__(self, config: FakeQualtricsConfig | None = None) -> None:
        self.config = config or FakeQualtricsConfig()
        self.reset()

    def reset(self) -> None:
        """Forget everything (accounts, surveys, faults, statistics) and return to real time;
        the configuration is kept."""
        self.clock = FakeClock()
        self.accounts = AccountRegistry()
        self.faults = FaultInjector()
        self.limiter = RateLimiter()
        self.stats = RequestStats()
        self.request_log = deque(maxlen=self.config.request_log_size)
        self._surveys = {}

    # Accounts and tokens

    def register_account(
        self,
        client_id: str,
        client_secret: str,
        *,
        datacenter: str,
        brand_id: str,
        api_token: str | None = None,
        scopes: frozenset[str] | None = None,
        **profile: Unpack[AccountProfile],
    ) -> Account:
        """Add an OAuth client (ValueError if the client id is taken); `profile` may set user_id,
        user_name, account_type, first_name, last_name and email (what `/whoami` shows)."""
        account = Account(
            client_id=client_id,
            client_secret=client_secret,
            datacenter=datacenter,
            brand_id=brand_id,
            api_token=api_token,
            scopes=scopes,
            **profile,
        )
        return self.accounts.register(account)

    def revoke_tokens(self, client_id: str) -> int:
        """Invalidate the client's access tokens (it can still get new ones)."""
        self._require_account(client_id)
        return self.accounts.revoke_tokens(client_id)

    def revoke_credentials(self, client_id: str) -> None:
        """Reject the client's credentials and tokens from now on."""
        self._require_account(client_id)
        self.accounts.revoke_credentials(client_id)

    def issue_token(
        self, client_id: str, client_secret: str, *, datacenter: str, scope: str | None
    ) -> IssuedToken:
        return self.accounts.issue_token(
            client_id=client_id,
            client_secret=client_secret,
            datacenter=datacenter,
            requested_scope=scope,
            now=self.clock.now(),
            ttl_seconds=self.config.token_ttl_seconds,
        )

    def authenticate(self, headers: Headers, datacenter: str) -> tuple[Account, str]:
        """The caller's account and a key for its token; `X-API-TOKEN` wins over a bearer."""
        api_token = headers.get("x-api-token")
        if api_token:
            return self.accounts.by_api_token(api_token), f"api:{api_token}"
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            bearer = credentials.strip()
            account = self.accounts.by_bearer(bearer, datacenter=datacenter, now=self.clock.now())
            return account, f"bearer:{bearer}"
        raise QualtricsError(401, "invalid_client", code=INVALID_CLIENT)

    @contextmanager
    def admit(self, account: Account, token_key: str) -> Iterator[None]:
        """Apply the configured rate limit for the duration of one request (429 if over)."""
        now = self.clock.now().timestamp()
        with self.limiter.admit(
            self.config.rate_limit, brand_id=account.brand_id, token_key=token_key, now=now
        ):
            yield

    async def simulate_latency(self) -> None:
        if self.config.latency_seconds > 0:
            await asyncio.sleep(self.config.latency_seconds)

    # Clock, faults, latency, limits

    def now(self) -> datetime:
        return self.clock.now()

    def set_clock(self, when: datetime | None) -> None:
        """Freeze the clock at `when` (timezone-aware), or return to real time with None."""
        self.clock.set(when)

    def advance_clock(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def inject_fault(self, fault: Fault | str, /, **options: Any) -> Fault:
        """Add a fault: a `Fault`, or its kind plus `Fault` fields, e.g.
        `inject_fault("status", status=503, count=2, path_pattern="/responses$")`."""
        if isinstance(fault, str):
            fault = Fault.model_validate({"kind": fault, **options})
        return self.faults.add(fault)

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_latency(self, seconds: float) -> None:
        self.config.latency_seconds = seconds

    def set_rate_limit(
        self,
        *,
        requests_per_second: float | None = None,
        burst: int | None = None,
        max_concurrent_per_token: int | None = None,
        retry_after: bool = True,
    ) -> None:
        """Limit API calls per brand and/or per token; with neither limit, turn limiting off."""
        if requests_per_second is None and max_concurrent_per_token is None:
            self.config.rate_limit = None
            return
        self.config.rate_limit = RateLimit(
            requests_per_second=requests_per_second,
            burst=burst,
            max_concurrent_per_token=max_concurrent_per_token,
            retry_after=retry_after,
        )

    def record(self, record: RequestRecord) -> None:
        self.stats.total += 1
        if record.status is not None:
            self.stats.by_status[record.status] += 1
        self.request_log.append(record)

    # Surveys

    @property
    def surveys(self) -> Mapping[str, Survey]:
        return MappingProxyType(self._surveys)

    def add_survey(self, survey: Survey) -> Survey:
        self._surveys[survey.survey_id] = survey
        return survey

    def find_survey(self, survey_id: str, account: Account) -> Survey:
        """The caller's survey: 400 for a malformed id, 404 if unknown, deleted or another
        brand's."""
        survey = self._surveys.get(checked_id(survey_id, SURVEY_ID))
        if survey is None or survey.brand_id != account.brand_id:
            raise not_found()
        return survey

    def delete_survey(self, survey_id: str) -> None:
        """Delete a survey and its responses (also out of band, as if deleted in the UI)."""
        del self._surveys[survey_id]

    def questions(self, survey_id: str) -> list[JsonObject]:
        """The survey's questions in creation (QID) order."""
        return [copy.deepcopy(question) for question in self._surveys[survey_id].questions.values()]

    def embedded_fields(self, survey_id: str) -> list[JsonObject]:
        return self._surveys[survey_id].embedded_fields()

    def responses(self, survey_id: str) -> list[StoredResponse]:
        return list(self._surveys[survey_id].responses.values())

    def _require_account(self, client_id: str) -> None:
        if client_id not in self.accounts.accounts:
            raise KeyError(f"no account with client_id {client_id!r}")


def checked_id(value: str, id_format: IdFormat) -> str:
    """A path id in its documented format, or the 400 Qualtrics answers for a malformed one."""
    if not id_format.matches(value):
        raise bad_request(f"Invalid {id_format.name} ID: {value!r}")
    return value
