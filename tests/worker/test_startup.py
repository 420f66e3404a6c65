"""`service worker` refuses to start without Redis or on an old schema (design §2)."""

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.cli import main
from service.config import get_settings
from service.db import SchemaOutOfDateError
from service.worker.settings import shutdown, startup, worker_settings
from tests.conftest import TEST_FERNET_KEY, TEST_JWT_SECRET, make_settings


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """`main()` installs its own root handler on the captured stderr; put ours back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def unmigrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path}/old.db"
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", url)
    monkeypatch.setenv("CONNECTOR_SECRET_KEYS", TEST_FERNET_KEY)
    monkeypatch.setenv("CONNECTOR_JWT_SECRET", TEST_JWT_SECRET)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_the_worker_needs_redis(unmigrated: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["worker"]) == 2
    assert "CONNECTOR_REDIS_URL is required" in capsys.readouterr().err


def test_the_worker_refuses_an_old_schema(
    unmigrated: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONNECTOR_REDIS_URL", "redis://127.0.0.1:1/0")  # never reached
    assert main(["worker"]) == 2
    assert "run `service migrate` first" in capsys.readouterr().err


async def test_a_restarted_worker_checks_the_schema_again(unmigrated: str) -> None:
    """The supervisor's next worker runs `startup` again: a schema migrated meanwhile to a
    newer release (or rolled back) stops it instead of writing rows it does not understand."""
    ctx: dict[str, Any] = {"settings": make_settings(unmigrated, redis_url="redis://x:1/0")}
    with pytest.raises(SchemaOutOfDateError):
        await startup(ctx)
    await shutdown(ctx)
    await shutdown(ctx)  # idempotent: the supervisor may call it after arq's own close()
    assert ctx["shut_down"] is True


def test_worker_settings_are_tuned_for_io_bound_deliveries() -> None:
    options = worker_settings(
        make_settings("sqlite+aiosqlite:///x.db", redis_url="redis://r:6379/3")
    )
    assert options["poll_delay"] == 0.05  # not arq's 0.5 s (reliability-facts §3.3)
    assert options["max_jobs"] == 50
    assert options["job_timeout"] == 60  # a SIGKILLed worker's jobs return after 70 s
    assert options["keep_result"] == 0
    assert options["max_tries"] >= 1000
    assert options["job_completion_wait"] == 50  # above the 45 s Qualtrics deadline
    assert options["handle_signals"] is False  # the supervisor handles them
    assert options["redis_settings"].database == 3
    (task,) = options["functions"]
    assert (task.name, task.keep_result_s, task.timeout_s) == ("delivery.send", 0, 60)
