"""`service run` on a fresh machine: schema, demo login, Swagger UI, restart keeps state."""

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port


class EmbeddedService:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.output = workdir / f"run-{self.port}.log"

    def start(self) -> subprocess.Popen[bytes]:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
        with self.output.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
                [sys.executable, "-m", "service", "run", "--port", str(self.port)],
                cwd=self.workdir,
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return process
            except httpx.TransportError:
                pass
            if process.poll() is not None:
                break
            time.sleep(0.2)
        process.kill()
        pytest.fail(f"service run did not become ready:\n{self.output.read_text()}")

    def log(self) -> str:
        return self.output.read_text()


@pytest.fixture
def embedded(tmp_path: Path) -> EmbeddedService:
    return EmbeddedService(tmp_path)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait(timeout=15)


def test_first_start_prints_a_working_login_and_restart_keeps_it(
    embedded: EmbeddedService,
) -> None:
    process = embedded.start()
    try:
        log = embedded.log()
        email = re.search(r"username:\s+(\S+)", log).group(1)  # type: ignore[union-attr]
        password = re.search(r"password:\s+(\S+)", log).group(1)  # type: ignore[union-attr]
        token = httpx.post(
            f"{embedded.base_url}/v1/auth/token", data={"username": email, "password": password}
        )
        assert token.status_code == 200, token.text
        docs = httpx.get(f"{embedded.base_url}/docs")
        assert docs.status_code == 200
        assert "swagger-ui" in docs.text
        me = httpx.get(
            f"{embedded.base_url}/v1/me",
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
        assert me.json()["qualtrics_enabled"] is True
    finally:
        _stop(process)

    assert (embedded.workdir / "connector.db").exists()
    assert (embedded.workdir / "connector.secrets.json").exists()

    # A second start reuses the database and the generated secrets: same login, no new demo.
    embedded.port = free_port()
    embedded.base_url = f"http://127.0.0.1:{embedded.port}"
    embedded.output = embedded.workdir / "second.log"
    process = embedded.start()
    try:
        assert "password:" not in embedded.log()
        again = httpx.post(
            f"{embedded.base_url}/v1/auth/token", data={"username": email, "password": password}
        )
        assert again.status_code == 200
    finally:
        _stop(process)


def test_demo_configures_an_integration_against_the_fake(tmp_path: Path) -> None:
    port, fake_port = free_port(), free_port()
    log_path = tmp_path / "demo.log"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("CONNECTOR_")}
    with log_path.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 (our own interpreter and module)
            [
                sys.executable,
                "-m",
                "service",
                "demo",
                "--port",
                str(port),
                "--fake-port",
                str(fake_port),
            ],
            cwd=tmp_path,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "Demo ready" not in log_path.read_text():
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)
        output = log_path.read_text()
        password = re.search(r"password:\s+(\S+)", output).group(1)  # type: ignore[union-attr]
        integration_url = re.search(r"integration:\s+(\S+)", output).group(1)  # type: ignore[union-attr]
        base_url = f"http://127.0.0.1:{port}"
        token = httpx.post(
            f"{base_url}/v1/auth/token",
            data={"username": "admin@demo.example", "password": password},
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        readiness = httpx.get(f"{integration_url}/readiness", headers=headers).json()
        assert readiness["ready"] is True
        assert readiness["enabled"] is True
        surveys = httpx.get(f"http://127.0.0.1:{fake_port}/_fake/surveys").json()
        assert [survey["isActive"] for survey in surveys] == [True]
    finally:
        _stop(process)
