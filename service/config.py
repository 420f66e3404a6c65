"""Settings, read once from `CONNECTOR_*` environment variables (design §2).

The embedded default (a local SQLite file) may run without configured secrets: it generates
them once and keeps them in a 0600 file beside the database, so a restart can still decrypt
what it stored. Every other deployment must configure real secrets; the service refuses to
start with missing or placeholder values rather than run with guessable keys.
"""

import json
import os
import secrets
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from cryptography.fernet import Fernet
from pydantic import BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./connector.db"

# Values people paste from examples; none of them may sign tokens or encrypt secrets.
PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "change_me", "secret", "placeholder", "example", "test", "dev"}
)
MIN_JWT_SECRET_LENGTH = 32


class ConfigurationError(RuntimeError):
    """The settings cannot be used to start the service; the message says which and why."""


def _plain_seconds(value: Any) -> Any:
    # `CONNECTOR_JOB_TIMEOUT=60` means seconds; ISO 8601 (`PT1M`) and `HH:MM:SS` still work.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# A duration that also accepts a plain number of seconds.
Seconds = Annotated[timedelta, BeforeValidator(_plain_seconds)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONNECTOR_", extra="ignore")

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = ""
    secret_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    jwt_secret: SecretStr = SecretStr("")
    qualtrics_base_url: str = "https://{subdomain}.qualtrics.com"
    creovai_app_url: str = "https://app.creovai.com"

    # Where the embedded default keeps the secrets it generated for itself.
    secrets_file: Path | None = None

    access_token_ttl: timedelta = timedelta(minutes=15)
    # Sensitive actions need an authentication at most this old (design §9, ASVS step-up).
    step_up_max_age: timedelta = timedelta(minutes=10)
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout: timedelta = timedelta(minutes=15)

    # Interactions carry transcripts: generous, but bounded (reliability-facts §5.4).
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Swagger UI and the OpenAPI document: on for the embedded default, off elsewhere unless
    # enabled (an exposed API map is a misconfiguration in production, OWASP API8).
    docs_enabled: bool | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: str = "INFO"
    # FastAPI's native OpenTelemetry (request spans, metrics and logs through the providers
    # the deployment configures). Off by default: the service's own telemetry is /metrics and
    # its JSON logs, and with it on FastAPI looks for providers on every request (~1.5 % of
    # intake's CPU) even when none is configured.
    opentelemetry: bool = False

    # Delivery: the arq worker, the sweeper and the embedded dispatcher (README "Worker and
    # queue"). Deliveries are I/O-bound: many jobs per worker, a short poll (reliability-facts
    # §3.3), and a job timeout just above one Qualtrics call's deadline (45 s), so the jobs of
    # a SIGKILLed worker run again after job_timeout + 10 s rather than arq's default 310 s.
    worker_max_jobs: int = Field(default=50, ge=1)
    worker_poll_delay: Seconds = timedelta(milliseconds=50)
    job_timeout: Seconds = timedelta(seconds=60)
    # On SIGTERM, in-flight jobs get this long to finish before they are cancelled.
    job_completion_wait: Seconds = timedelta(seconds=50)
    worker_health_check_interval: Seconds = timedelta(seconds=30)
    sweeper_interval: Seconds = timedelta(seconds=5)
    # How often enabled integrations are checked against Qualtrics (design §6).
    integration_health_check_interval: Seconds = timedelta(minutes=15)
    # A due delivery enqueued longer ago than this is enqueued again; default job_timeout + 15 s.
    sweep_stale_after: Seconds | None = None
    sweep_batch_size: int = Field(default=500, ge=1, le=5000)
    # Consumer tasks of the embedded dispatcher (no Redis); 0 = deliver nothing in process.
    embedded_workers: int = Field(default=4, ge=0, le=100)
    # The limiter shared by every worker, per Qualtrics brand (official limits are unknown:
    # qualtrics-api.md §6.1); waiting for a slot never counts as an attempt.
    qualtrics_rate_per_second: float = Field(default=10.0, gt=0)
    # 1: evenly spaced, so every 1-second window stays at the rate (service.delivery.ratelimit).
    qualtrics_burst: int = Field(default=1, ge=1)
    qualtrics_max_concurrency: int = Field(default=10, ge=1)
    # A longer wait is rescheduled instead; it stays inside the job's send budget.
    qualtrics_rate_max_wait: Seconds = timedelta(seconds=20)

    @field_validator("secret_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _no_wildcard_origin(cls, value: list[str]) -> list[str]:
        # The API authenticates with bearer tokens; a wildcard would let any page use them.
        if "*" in value:
            raise ValueError("CONNECTOR_CORS_ORIGINS may not contain '*'; list the origins")
        return value

    @field_validator(
        "worker_poll_delay",
        "job_timeout",
        "worker_health_check_interval",
        "sweeper_interval",
        "sweep_stale_after",
        "qualtrics_rate_max_wait",
    )
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value <= timedelta(0):
            raise ValueError("must be a positive duration")
        return value

    @field_validator("job_completion_wait")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    @property
    def is_embedded(self) -> bool:
        """True for the embedded default: a SQLite database on this machine."""
        return make_url(self.database_url).get_backend_name() == "sqlite"

    @property
    def stale_enqueue_after(self) -> timedelta:
        """How old an enqueue may be before the sweeper enqueues a due delivery again."""
        if self.sweep_stale_after is not None:
            return self.sweep_stale_after
        return self.job_timeout + timedelta(seconds=15)

    @property
    def serve_docs(self) -> bool:
        return self.is_embedded if self.docs_enabled is None else self.docs_enabled

    @property
    def fernet_keys(self) -> list[str]:
        return [key.get_secret_value() for key in self.secret_keys]


def _embedded_secrets_path(settings: Settings) -> Path:
    if settings.secrets_file is not None:
        return settings.secrets_file
    database = make_url(settings.database_url).database or ""
    if database in ("", ":memory:"):
        return Path("connector.secrets.json")
    return Path(database).with_suffix(".secrets.json")


def _load_or_create_embedded_secrets(path: Path) -> dict[str, str]:
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    generated = {
        "secret_keys": Fernet.generate_key().decode(),
        "jwt_secret": secrets.token_urlsafe(48),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with 0600 from the start so the keys are never world-readable, even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(generated, handle)
    return generated


def _check_secrets(settings: Settings) -> None:
    if not settings.secret_keys:
        raise ConfigurationError("CONNECTOR_SECRET_KEYS is required: comma-separated Fernet keys")
    for position, key in enumerate(settings.fernet_keys, start=1):
        try:
            Fernet(key)
        except ValueError:
            raise ConfigurationError(
                f"CONNECTOR_SECRET_KEYS entry {position} is not a Fernet key "
                "(32 url-safe base64-encoded bytes; make one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            ) from None
    jwt_secret = settings.jwt_secret.get_secret_value()
    if not jwt_secret:
        raise ConfigurationError("CONNECTOR_JWT_SECRET is required")
    if jwt_secret.lower() in PLACEHOLDER_SECRETS or len(jwt_secret) < MIN_JWT_SECRET_LENGTH:
        raise ConfigurationError(
            f"CONNECTOR_JWT_SECRET looks like a placeholder: use at least "
            f"{MIN_JWT_SECRET_LENGTH} random characters"
        )


def resolve_settings(settings: Settings) -> Settings:
    """Fill in the embedded default's generated secrets, then refuse unusable secrets."""
    if settings.is_embedded and (not settings.secret_keys or not settings.jwt_secret):
        stored = _load_or_create_embedded_secrets(_embedded_secrets_path(settings))
        updates: dict[str, Any] = {}
        if not settings.secret_keys:
            updates["secret_keys"] = [SecretStr(stored["secret_keys"])]
        if not settings.jwt_secret.get_secret_value():
            updates["jwt_secret"] = SecretStr(stored["jwt_secret"])
        settings = settings.model_copy(update=updates)
    _check_secrets(settings)
    return settings


@lru_cache
def get_settings() -> Settings:
    return resolve_settings(Settings())
