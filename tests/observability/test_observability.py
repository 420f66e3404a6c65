import json
import logging

import httpx
import opentelemetry.trace
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.main import create_app
from service.observability.context import request_id_var
from service.observability.logging import JsonFormatter
from service.observability.metrics import REGISTRY
from tests.conftest import Account, make_settings
from tests.webhooks.helpers import event, organization_secret, post_event


def sample(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def test_metrics_count_intake_and_show_the_queue(
    client: httpx.AsyncClient, admin: Account, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    before = sample("connector_webhook_events_total", outcome="catalog_updated")
    secret = await organization_secret(sessionmaker, admin.organization.id)
    body = event({"categories": []}, "catalog.updated")
    assert (await post_event(client, admin.organization.id, secret, body)).status_code == 200
    assert sample("connector_webhook_events_total", outcome="catalog_updated") == before + 1

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'connector_deliveries{status="pending"} 0.0' in response.text
    assert "connector_oldest_due_delivery_age_seconds 0.0" in response.text
    assert "connector_http_request_seconds_bucket" in response.text


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    generated = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith junk"})
    assert len(generated.headers["X-Request-ID"]) == 32
    problem = await client.get("/nowhere")
    assert problem.headers["X-Request-ID"]


def test_json_log_lines_carry_the_request_id() -> None:
    token = request_id_var.set("req-42")
    try:
        record = logging.LogRecord("service.x", logging.INFO, __file__, 1, "sent %s", ("it",), None)
        record.delivery_id = "d-1"
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "sent it"
    assert line["request_id"] == "req-42"
    assert line["delivery_id"] == "d-1"
    assert line["level"] == "INFO"


async def test_fastapi_opentelemetry_is_off_unless_configured(
    monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    """Off by default, FastAPI does not look for OpenTelemetry providers per request; on, it
    does (and would trace through whatever provider the deployment configured)."""
    looked_up: list[str] = []
    real = opentelemetry.trace.get_tracer_provider

    def counting() -> opentelemetry.trace.TracerProvider:
        looked_up.append("tracer provider")
        return real()

    monkeypatch.setattr(opentelemetry.trace, "get_tracer_provider", counting)
    for enabled, expected in ((False, 0), (True, 2)):
        looked_up.clear()
        app = create_app(make_settings(database_url, opentelemetry=enabled), check_schema=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(2):
                assert (await client.get("/healthz")).status_code == 200
        assert len(looked_up) >= expected, (enabled, looked_up)
        if not enabled:
            assert looked_up == []
