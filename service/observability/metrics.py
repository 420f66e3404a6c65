"""Prometheus metrics.

Counters and histograms are per process (each api and worker process exposes its own);
the queue gauges are read from the database at scrape time, because the outbox rows are
the one truth every process shares.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from service.models import Delivery, DeliveryStatus
from service.models.base import utc_now

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUEST_SECONDS = Histogram(
    "connector_http_request_seconds",
    "HTTP requests by method, route and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
WEBHOOK_EVENTS = Counter(
    "connector_webhook_events_total",
    "Webhook events by outcome (accepted, duplicate, stale, catalog_updated).",
    ["outcome"],
    registry=REGISTRY,
)
INTAKE_BATCH_SIZE = Histogram(
    "connector_intake_batch_webhooks",
    "Completed interactions stored per intake commit (group commit; 1 when idle).",
    registry=REGISTRY,
    buckets=(1, 2, 5, 10, 20, 50, 100, 200),
)
DELIVERIES_CREATED = Counter(
    "connector_deliveries_created_total",
    "Deliveries created at intake, by initial status.",
    ["status"],
    registry=REGISTRY,
)
DELIVERY_OUTCOMES = Counter(
    "connector_delivery_outcomes_total",
    "Delivery attempts by outcome (delivered, retry_scheduled, rate_limited, held, ...).",
    ["outcome"],
    registry=REGISTRY,
)
QUALTRICS_RATE_LIMITED = Counter(
    "connector_qualtrics_rate_limited_total",
    "Requests Qualtrics answered with 429 (they spend no attempt).",
    registry=REGISTRY,
)
DELIVERIES_BY_STATUS = Gauge(
    "connector_deliveries",
    "Deliveries by status (from the database).",
    ["status"],
    registry=REGISTRY,
)
OLDEST_PENDING_AGE = Gauge(
    "connector_oldest_due_delivery_age_seconds",
    "How long the longest-waiting due delivery has waited (0 when none is due).",
    registry=REGISTRY,
)


async def refresh_queue_gauges(session: AsyncSession) -> None:
    counts = dict(
        (
            await session.execute(select(Delivery.status, func.count()).group_by(Delivery.status))
        ).all()
    )
    for status in DeliveryStatus:
        DELIVERIES_BY_STATUS.labels(status.value).set(counts.get(status, 0))
    now = utc_now()
    oldest = await session.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now
        )
    )
    OLDEST_PENDING_AGE.set(max(0.0, (now - oldest).total_seconds()) if oldest else 0.0)
