"""The `service` command's operator subcommands, run as an operator would."""

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from service.cli import main
from service.config import get_settings
from service.db import create_engine, create_sessionmaker
from service.kit.crypto import SecretBox, SecretDecryptionError
from service.models import AuditLogEntry, Organization, User, WebhookSecret
from tests.conftest import TEST_JWT_SECRET


@pytest.fixture
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite+aiosqlite:///{tmp_path}/cli.db"
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", url)
    monkeypatch.setenv("CONNECTOR_SECRET_KEYS", Fernet.generate_key().decode())
    monkeypatch.setenv("CONNECTOR_JWT_SECRET", TEST_JWT_SECRET)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    get_settings.cache_clear()
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def query(url: str, statement):  # type: ignore[no-untyped-def]
    async def fetch():  # type: ignore[no-untyped-def]
        engine = create_engine(url)
        try:
            async with create_sessionmaker(engine)() as session:
                return (await session.scalars(statement)).all()
        finally:
            await engine.dispose()

    return asyncio.run(fetch())


def test_operator_workflow(
    environment: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, "migrate")[0] == 0

    status, out, _ = run(capsys, "create-org", "Acme", "--qualtrics-enabled")
    assert status == 0
    organization_id = re.search(r"organization id: (\S+)", out).group(1)  # type: ignore[union-attr]
    webhook_secret = re.search(r"webhook secret:\s+(whsec_\S+)", out).group(1)  # type: ignore[union-attr]
    (organization,) = query(environment, select(Organization))
    assert str(organization.id) == organization_id
    assert organization.qualtrics_enabled is True

    # The signing secret is stored encrypted, never in the clear.
    (stored,) = query(environment, select(WebhookSecret))
    assert webhook_secret not in stored.secret_encrypted
    old_key = get_settings().fernet_keys[0]
    assert SecretBox([old_key]).decrypt(stored.secret_encrypted) == webhook_secret

    status, out, _ = run(
        capsys,
        "create-user",
        "--org",
        organization_id,
        "--email",
        "Ops@Example.com",
        "--password",
        "a long enough password",
        "--role",
        "admin",
    )
    assert status == 0
    (user,) = query(environment, select(User))
    assert user.email == "ops@example.com"
    assert user.password_hash.startswith("$argon2id$")
    assert "a long enough password" not in out

    assert run(capsys, "set-qualtrics-enabled", organization_id, "off")[0] == 0
    assert query(environment, select(Organization))[0].qualtrics_enabled is False

    # Rotation: a new key first, rotate, then the old key alone can no longer decrypt.
    new_key = Fernet.generate_key().decode()
    monkeypatch.setenv("CONNECTOR_SECRET_KEYS", f"{new_key},{old_key}")
    status, out, _ = run(capsys, "rotate-keys")
    assert status == 0
    assert "Re-encrypted 1 stored secret(s)" in out
    (rotated,) = query(environment, select(WebhookSecret))
    assert SecretBox([new_key]).decrypt(rotated.secret_encrypted) == webhook_secret
    with pytest.raises(SecretDecryptionError):
        SecretBox([old_key]).decrypt(rotated.secret_encrypted)

    actions = {entry.action for entry in query(environment, select(AuditLogEntry))}
    assert actions == {
        "organization.created",
        "user.created",
        "organization.qualtrics_enabled_changed",
    }


def test_errors_are_clear_and_exit_2(environment: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "create-org", "Acme")
    assert status == 2
    assert "run `service migrate` first" in err

    run(capsys, "migrate")
    missing = "00000000-0000-0000-0000-000000000000"
    status, _, err = run(
        capsys, "create-user", "--org", missing, "--email", "a@b.c", "--password", "x" * 12
    )
    assert (status, err.strip()) == (2, f"service create-user: no organization with id {missing}")

    _, out, _ = run(capsys, "create-org", "Acme")
    organization_id = re.search(r"organization id: (\S+)", out).group(1)  # type: ignore[union-attr]
    status, _, err = run(
        capsys, "create-user", "--org", organization_id, "--email", "a@b.c", "--password", "short"
    )
    assert status == 2
    assert "at least 10 characters" in err


def test_api_refuses_an_old_schema(environment: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "api", "--port", "1")
    assert status == 2
    assert "run `service migrate` first" in err


def test_production_database_without_secrets_refuses_to_start(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONNECTOR_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1/x")
    monkeypatch.delenv("CONNECTOR_SECRET_KEYS", raising=False)
    monkeypatch.delenv("CONNECTOR_JWT_SECRET", raising=False)
    status, _, err = run(capsys, "migrate")
    get_settings.cache_clear()
    assert status == 2
    assert "CONNECTOR_SECRET_KEYS is required" in err
