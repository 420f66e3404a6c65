"""A faithful, stateful fake of the Qualtrics v3 API, for end-to-end tests, the demo and
benchmarks over real HTTP.

    app = create_fake_qualtrics_app(FakeQualtricsConfig(...))
    fake: FakeQualtrics = app.state.fake
    fake.register_account("client", "secret", datacenter="acme", brand_id="acme")

or as its own process: `python -m service.testing.fake_qualtrics --port 8099`. Point the
connector at `http://127.0.0.1:8099/{subdomain}`: the fake serves `/{subdomain}/oauth2/token`
and `/{subdomain}/API/v3/...` (and the unprefixed paths with the datacenter taken from a
`{dc}.qualtrics.com` Host header).

What it does, following the checklist of qualtrics-api.md §7:

* OAuth client credentials with tokens bound to their datacenter, expiring on a clock the test
  controls; `X-API-TOKEN`; `/whoami` (`api_auth`, `accounts`).
* The v3 envelope on every answer, a 404 envelope for unknown routes (`envelope`, `app`).
* Survey definitions: create, get, metadata, blocks, questions, flow, versions, activation,
  delete; the legacy `/surveys` list/get/update/delete (`api_surveys`, `surveys`, `questions`,
  `flow`), with ids and enums checked against the spec (`spec`).
* Single responses with values checked against the survey, `Idempotency-Key`, a configurable
  "not yet available" window (`api_responses`, `responses`).
* A 429 limiter, injected faults and artificial latency (`limits`, `faults`, `middleware`).
* Control and inspection from Python (`FakeQualtrics`) or over HTTP under `/_fake/` (`control`).

Not implemented (they answer 404 like unknown routes), because the connector does not use
them: the bulk `import-responses` endpoints, `PUT /responses/{id}`, the response schema, file
uploads, QSF import/export, survey options, quotas, languages and translations, and the
"Request proxied" notice for legacy datacenter hosts.

Behaviour the reference marks unconfirmed [U] is either a setting of `FakeQualtricsConfig` or
named as a choice in the docstring of the module that implements it.
"""

from .accounts import Account
from .app import create_fake_qualtrics_app
from .config import FakeQualtricsConfig, Fault, FaultKind, FaultPhase, RateLimit
from .faults import SimulatedConnectionReset
from .state import FakeQualtrics, RequestRecord, RequestStats
from .surveys import StoredResponse, Survey, SurveyVersion

__all__ = [
    "Account",
    "FakeQualtrics",
    "FakeQualtricsConfig",
    "Fault",
    "FaultKind",
    "FaultPhase",
    "RateLimit",
    "RequestRecord",
    "RequestStats",
    "SimulatedConnectionReset",
    "StoredResponse",
    "Survey",
    "SurveyVersion",
    "create_fake_qualtrics_app",
]
