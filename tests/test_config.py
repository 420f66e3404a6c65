import json
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr, ValidationError

from service.config import ConfigurationError, Settings, resolve_settings

POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1/connector"
GOOD_JWT = "j" * 40


def settings(**values: object) -> Settings:
    return Settings.model_validate(values)


class TestProductionSecrets:
    def test_missing_secret_keys_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="CONNECTOR_SECRET_KEYS is required"):
            resolve_settings(settings(database_url=POSTGRES, jwt_secret=GOOD_JWT))

    def test_missing_jwt_secret_refused(self) -> None:
        with pytest.raises(ConfigurationError, match="CONNECTOR_JWT_SECRET is required"):
            resolve_settings(
                settings(database_url=POSTGRES, secret_keys=Fernet.generate_key().decode())
            )

    @pytest.mark.parametrize("jwt_secret", ["changeme", "secret", "short-but-random-9f8e"])
    def test_placeholder_jwt_secret_refused(self, jwt_secret: str) -> None:
        with pytest.raises(ConfigurationError, match="placeholder"):
            resolve_settings(
                settings(
                    database_url=POSTGRES,
                    secret_keys=Fernet.generate_key().decode(),
                    jwt_secret=jwt_secret,
                )
            )

    def test_malformed_fernet_key_refused_without_echoing_it(self) -> None:
        with pytest.raises(ConfigurationError, match="entry 2 is not a Fernet key") as raised:
            resolve_settings(
                settings(
                    database_url=POSTGRES,
                    secret_keys=f"{Fernet.generate_key().decode()},changeme-not-a-key",
                    jwt_secret=GOOD_JWT,
                )
            )
        assert "changeme-not-a-key" not in str(raised.value)

    def test_comma_separated_keys_are_all_kept_in_order(self) -> None:
        first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
        resolved = resolve_settings(
            settings(database_url=POSTGRES, secret_keys=f"{first}, {second}", jwt_secret=GOOD_JWT)
        )
        assert resolved.fernet_keys == [first, second]

    def test_secrets_are_hidden_in_repr(self) -> None:
        key = Fernet.generate_key().decode()
        resolved = resolve_settings(
            settings(database_url=POSTGRES, secret_keys=key, jwt_secret=GOOD_JWT)
        )
        assert key not in repr(resolved)
        assert GOOD_JWT not in repr(resolved)


class TestEmbeddedDefault:
    def test_generates_secrets_once_in_a_private_file(self, tmp_path: Path) -> None:
        url = f"sqlite+aiosqlite:///{tmp_path}/connector.db"
        first = resolve_settings(settings(database_url=url))
        secrets_file = tmp_path / "connector.secrets.json"
        assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
        stored = json.loads(secrets_file.read_text())
        assert first.fernet_keys == [stored["secret_keys"]]
        # A restart reuses them, so what was encrypted stays readable.
        second = resolve_settings(settings(database_url=url))
        assert second.fernet_keys == first.fernet_keys
        assert second.jwt_secret == first.jwt_secret

    def test_configured_secrets_win(self, tmp_path: Path) -> None:
        key = Fernet.generate_key().decode()
        resolved = resolve_settings(
            settings(
                database_url=f"sqlite+aiosqlite:///{tmp_path}/c.db",
                secret_keys=key,
                jwt_secret=SecretStr(GOOD_JWT),
            )
        )
        assert resolved.fernet_keys == [key]
        assert not (tmp_path / "c.secrets.json").exists()


class TestOtherSettings:
    def test_docs_are_on_for_the_embedded_default_and_off_elsewhere_unless_enabled(self) -> None:
        assert settings().serve_docs is True
        assert settings(database_url=POSTGRES).serve_docs is False
        assert settings(database_url=POSTGRES, docs_enabled="true").serve_docs is True
        assert settings(docs_enabled="false").serve_docs is False

    def test_cors_wildcard_refused(self) -> None:
        with pytest.raises(ValidationError, match="may not contain"):
            settings(cors_origins="https://a.example, *")

    def test_environment_names(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CONNECTOR_DATABASE_URL", POSTGRES)
        monkeypatch.setenv("CONNECTOR_REDIS_URL", "redis://127.0.0.1:6379/0")
        monkeypatch.setenv("CONNECTOR_QUALTRICS_BASE_URL", "http://127.0.0.1:8099/{subdomain}")
        monkeypatch.setenv("CONNECTOR_CREOVAI_APP_URL", "https://app.example")
        loaded = Settings()
        assert loaded.database_url == POSTGRES
        assert loaded.redis_url == "redis://127.0.0.1:6379/0"
        assert loaded.qualtrics_base_url == "http://127.0.0.1:8099/{subdomain}"
        assert loaded.creovai_app_url == "https://app.example"
        assert not loaded.is_embedded
