"""The FastAPI application: lifespan resources, middleware, routers, error handlers."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig
from redis.asyncio import Redis

from service.audit.endpoints import router as audit_router
from service.auth.endpoints import router as auth_router
from service.catalog.endpoints import router as catalog_router
from service.config import Settings
from service.connections.endpoints import router as connections_router
from service.connections.gateway import QualtricsGateway
from service.data_fields.endpoints import router as data_fields_router
from service.db import create_engine, create_sessionmaker, ensure_schema_current
from service.deliveries.endpoints import router as deliveries_router
from service.delivery.health_checks import HealthCheckLoop
from service.delivery.queue import ArqDispatcher, InProcessDispatcher
from service.delivery.ratelimit import LocalRateLimiter
from service.delivery.sender import DeliveryContext
from service.errors import install_error_handlers
from service.health.endpoints import router as health_router
from service.integrations.endpoints import router as integrations_router
from service.kit.body_limit import BodySizeLimitMiddleware
from service.kit.crypto import SecretBox
from service.kit.gc_tuning import freeze_startup_heap
from service.observability.endpoints import router as metrics_router
from service.observability.middleware import RequestContextMiddleware
from service.openapi import install_openapi
from service.projects.endpoints import router as projects_router
from service.triggers.endpoints import router as triggers_router
from service.webhooks.batching import IntakeBatcher
from service.webhooks.endpoints import add_intake_route
from service.webhooks.endpoints import router as webhooks_router
from service.webhooks.schemas import REQUEST_BODY_MODELS
from service.webhooks.service import IntakeService
from service.webhooks.signing_secrets import SigningSecretCache
from service.worker.settings import rate_limit_config

API_DESCRIPTION = """
Delivers completed Creovai interactions, with their conversation insights, into a Qualtrics
survey project as responses.

**Sign in** with the *Authorize* button (email as `username`). Admins configure each
integration in five steps: Qualtrics credentials, project, data fields, triggers, enable.
Errors are [RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) problem details.
"""

OPENAPI_TAGS = [
    {"name": "auth", "description": "Sign in and see who you are."},
    {"name": "catalog", "description": "The organization's categories, scores and fields."},
    {"name": "integrations", "description": "Qualtrics integrations: create, list, enable."},
    {
        "name": "setup",
        "description": "The five setup steps: credentials, project, data fields, triggers, enable.",
    },
    {"name": "triggers", "description": "Which interactions an integration sends (step 4)."},
    {
        "name": "deliveries",
        "description": "The delivery log: status and attempts, retry, discard held, replay.",
    },
    {"name": "webhooks", "description": "Signed events from the Creovai platform."},
    {"name": "audit", "description": "Who changed what."},
    {"name": "health", "description": "Liveness and readiness probes."},
]


# FastAPI's native OpenTelemetry, all of it off (`CONNECTOR_OPENTELEMETRY` turns it on).
TELEMETRY_OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
}


def _operation_id(route: APIRoute) -> str:
    # Stable ids (`list_integrations`) make generated clients readable.
    return route.name


def _create_dispatcher(
    app: FastAPI, settings: Settings
) -> ArqDispatcher | InProcessDispatcher | None:
    """Where intake sends new deliveries: arq when Redis is configured (workers deliver), else
    the embedded dispatcher, which delivers in this process (`embedded_workers` = 0: nowhere)."""
    if settings.redis_url:
        return ArqDispatcher.from_url(settings.redis_url, app.state.sessionmaker)
    if not settings.embedded_workers:
        return None
    limiter = LocalRateLimiter(rate_limit_config(settings))

    def context() -> DeliveryContext:
        # Read at every delivery, so it is always the process's current gateway.
        return DeliveryContext(
            sessionmaker=app.state.sessionmaker,
            gateway=app.state.qualtrics,
            limiter=limiter,
            settings=settings,
        )

    dispatcher = InProcessDispatcher(
        context, engine=app.state.engine, sessionmaker=app.state.sessionmaker, settings=settings
    )
    dispatcher.start()
    return dispatcher


def create_app(settings: Settings, *, check_schema: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        gateway = QualtricsGateway.for_settings(
            base_url_template=settings.qualtrics_base_url, box=app.state.secret_box, redis=redis
        )
        dispatcher: ArqDispatcher | InProcessDispatcher | None = None
        intake: IntakeService | None = None
        health_checks: HealthCheckLoop | None = None
        try:
            if check_schema:
                await ensure_schema_current(engine)
            app.state.engine = engine
            app.state.sessionmaker = create_sessionmaker(engine)
            app.state.redis = redis
            app.state.qualtrics = gateway
            dispatcher = _create_dispatcher(app, settings)
            app.state.dispatcher = dispatcher
            intake = IntakeService(
                app.state.sessionmaker,
                SigningSecretCache(app.state.sessionmaker, app.state.secret_box),
                # Looked up per batch: tests replace the dispatcher of a running app.
                IntakeBatcher(
                    app.state.sessionmaker,
                    lambda: app.state.dispatcher,
                    # Two on PostgreSQL, so one batch is built while the other commits; SQLite
                    # has one writer at a time anyway.
                    writers=1 if engine.dialect.name == "sqlite" else 2,
                ),
            )
            intake.batcher.start()
            app.state.intake = intake
            if isinstance(dispatcher, InProcessDispatcher):
                # The embedded default has no worker: its scheduled health checks run here.
                health_checks = HealthCheckLoop(
                    app.state.sessionmaker,
                    gateway,
                    interval=settings.integration_health_check_interval.total_seconds(),
                )
                health_checks.start()
            freeze_startup_heap()
            yield
        finally:
            if health_checks is not None:
                await health_checks.stop()
            if intake is not None:
                # Answer the webhooks waiting for a commit before the queue goes away.
                await intake.batcher.aclose()
            if dispatcher is not None:
                await dispatcher.aclose()
            await gateway.aclose()
            if redis is not None:
                await redis.aclose()
            await engine.dispose()

    app = FastAPI(
        title="Creovai → Qualtrics connector",
        version="0.1.0",
        description=API_DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        generate_unique_id_function=_operation_id,
        lifespan=lifespan,
        docs_url="/docs" if settings.serve_docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.serve_docs else None,
        swagger_ui_parameters={"persistAuthorization": True},
        telemetry=None if settings.opentelemetry else TELEMETRY_OFF,
    )
    app.state.settings = settings
    app.state.secret_box = SecretBox(settings.fernet_keys)

    install_error_handlers(app)
    install_openapi(app, extra_models=REQUEST_BODY_MODELS)
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match"],
            expose_headers=["ETag", "Location"],
        )

    # Outermost, so every answer (errors and 413s included) carries the request id.
    app.add_middleware(RequestContextMiddleware)
    add_intake_route(app)
    for router in (
        # First: routes are matched in order, and nearly every request is a webhook.
        webhooks_router,
        auth_router,
        catalog_router,
        integrations_router,
        connections_router,
        projects_router,
        data_fields_router,
        triggers_router,
        deliveries_router,
        audit_router,
        health_router,
        metrics_router,
    ):
        app.include_router(router)
    return app


def app_from_environment() -> FastAPI:
    """Factory for `uvicorn --factory` (and `service api --workers N`)."""
    from service.config import get_settings

    return create_app(get_settings())
