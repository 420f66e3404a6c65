"""The `service` command: run, api, migrate and operator commands (design §2)."""

import argparse
import asyncio
import logging
import secrets
import sys
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar

import uvicorn
from alembic import command
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from service.config import ConfigurationError, Settings, get_settings
from service.db import (
    SchemaOutOfDateError,
    alembic_config,
    create_engine,
    create_sessionmaker,
    ensure_schema_current,
)
from service.kit.crypto import SecretBox
from service.kit.key_rotation import rotate_encrypted_columns
from service.models import Organization, Role, User
from service.observability.logging import configure_logging
from service.organizations.service import OrganizationError, organization_service

T = TypeVar("T")

DEMO_ORGANIZATION = "Demo organization"
DEMO_ADMIN_EMAIL = "admin@demo.example"


class CommandError(Exception):
    """Ends the command with this message and exit status 2."""


async def _in_transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    engine = create_engine(settings.database_url)
    try:
        await ensure_schema_current(engine)
        async with create_sessionmaker(engine).begin() as session:
            return await work(session)
    finally:
        await engine.dispose()


def _transaction(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]]) -> T:
    return asyncio.run(_in_transaction(settings, work))


def _migrate(settings: Settings) -> None:
    config = alembic_config(settings.database_url)
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")


def _check_schema(settings: Settings) -> None:
    async def check() -> None:
        engine = create_engine(settings.database_url)
        try:
            await ensure_schema_current(engine)
        finally:
            await engine.dispose()

    asyncio.run(check())


def _bootstrap_demo(settings: Settings, base_url: str) -> None:
    """On the embedded default's first start, create a demo organization and admin."""

    async def bootstrap(session: AsyncSession) -> tuple[Organization, str, str] | None:
        if await session.scalar(select(Organization.id).limit(1)) is not None:
            return None
        created = await organization_service.create(
            session,
            SecretBox(settings.fernet_keys),
            name=DEMO_ORGANIZATION,
            qualtrics_enabled=True,
        )
        password = secrets.token_urlsafe(12)
        await organization_service.create_user(
            session,
            organization_id=created.organization.id,
            email=DEMO_ADMIN_EMAIL,
            password=password,
            role=Role.ADMIN,
        )
        return created.organization, password, created.webhook_secret

    result = _transaction(settings, bootstrap)
    if result is None:
        print(
            f"Open {base_url}/docs and sign in with your admin account "
            f"(the first start created {DEMO_ADMIN_EMAIL}; "
            "`service create-user` adds another)."
        )
        return
    organization, password, webhook_secret = result
    print(
        "\n".join(
            [
                "",
                "First start: created a demo organization and its admin.",
                f"  Swagger UI:      {base_url}/docs  (Authorize → username and password below)",
                f"  username:        {DEMO_ADMIN_EMAIL}",
                f"  password:        {password}",
                f"  organization id: {organization.id}",
                f"  webhook secret:  {webhook_secret}",
                "The password is shown only this once.",
                "",
            ]
        )
    )


def cmd_run(args: argparse.Namespace, settings: Settings) -> None:
    _migrate(settings)
    base_url = f"http://{args.host}:{args.port}"
    _bootstrap_demo(settings, base_url)
    from service.main import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level="info")


def cmd_demo(args: argparse.Namespace, settings: Settings) -> None:
    from service.demo import demo_database_url, serve_demo
    from service.main import create_app

    database = Path(args.database).resolve()
    for stale in database.parent.glob(database.name + "*"):
        stale.unlink()  # the fake forgets its surveys on exit, so the demo starts afresh
    settings = settings.model_copy(
        update={
            "database_url": demo_database_url(database),
            "redis_url": "",
            "qualtrics_base_url": f"http://127.0.0.1:{args.fake_port}/{{subdomain}}",
        }
    )
    _migrate(settings)
    app = create_app(settings)
    asyncio.run(serve_demo(settings, app, host=args.host, port=args.port, fake_port=args.fake_port))


def cmd_api(args: argparse.Namespace, settings: Settings) -> None:
    _check_schema(settings)
    uvicorn.run(
        "service.main:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        log_level="info",
    )


def cmd_worker(_: argparse.Namespace, settings: Settings) -> None:
    if not settings.redis_url:
        raise CommandError(
            "CONNECTOR_REDIS_URL is required: the worker takes its jobs from Redis "
            "(without Redis, `service run` delivers in its own process)"
        )
    _check_schema(settings)
    from service.worker.supervisor import run_worker

    run_worker(settings)


def cmd_migrate(_: argparse.Namespace, settings: Settings) -> None:
    _migrate(settings)
    print("The database schema is up to date.")


def cmd_create_org(args: argparse.Namespace, settings: Settings) -> None:
    async def create(session: AsyncSession) -> tuple[uuid.UUID, str]:
        created = await organization_service.create(
            session,
            SecretBox(settings.fernet_keys),
            name=args.name,
            qualtrics_enabled=args.qualtrics_enabled,
        )
        return created.organization.id, created.webhook_secret

    organization_id, webhook_secret = _transaction(settings, create)
    print(f"organization id: {organization_id}")
    print(f"webhook secret:  {webhook_secret}")
    print("Keep the webhook secret safe: it is shown only this once.")


def cmd_set_qualtrics_enabled(args: argparse.Namespace, settings: Settings) -> None:
    enabled = args.state == "on"

    async def update(session: AsyncSession) -> None:
        await organization_service.set_qualtrics_enabled(session, args.org, enabled=enabled)

    _transaction(settings, update)
    print(f"Qualtrics integrations are now {'enabled' if enabled else 'disabled'} for {args.org}.")


def cmd_create_user(args: argparse.Namespace, settings: Settings) -> None:
    async def create(session: AsyncSession) -> User:
        return await organization_service.create_user(
            session,
            organization_id=args.org,
            email=args.email,
            password=args.password,
            role=Role(args.role),
        )

    user = _transaction(settings, create)
    print(f"user id: {user.id} ({user.email}, {user.role.value})")


def cmd_rotate_keys(_: argparse.Namespace, settings: Settings) -> None:
    async def rotate(session: AsyncSession) -> int:
        return await rotate_encrypted_columns(session, SecretBox(settings.fernet_keys))

    count = _transaction(settings, rotate)
    print(f"Re-encrypted {count} stored secret(s) under the first key of CONNECTOR_SECRET_KEYS.")
    print("Keys after the first may now be removed.")


def cmd_openapi(args: argparse.Namespace, settings: Settings) -> None:
    import json

    from service.main import create_app

    document = json.dumps(create_app(settings).openapi(), indent=2, ensure_ascii=False) + "\n"
    if args.output == "-":
        sys.stdout.write(document)
    else:
        Path(args.output).write_text(document)
        print(f"Wrote {args.output}")


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an organization id (a UUID)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="embedded default: migrate, demo data, serve the API")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser(
        "demo", help="embedded service + fake Qualtrics, with an integration set up (steps 1-5)"
    )
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--fake-port", type=int, default=8099)
    demo.add_argument("--database", default="connector-demo.db", help="recreated on every run")
    demo.set_defaults(handler=cmd_demo)

    api = commands.add_parser("api", help="serve the API (production; run `migrate` first)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1)
    api.set_defaults(handler=cmd_api)

    worker = commands.add_parser(
        "worker",
        help="deliver to Qualtrics from the Redis queue, with the sweeper (production; "
        "restarts itself when Redis restarts)",
    )
    worker.set_defaults(handler=cmd_worker)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to this release")
    migrate.set_defaults(handler=cmd_migrate)

    create_org = commands.add_parser("create-org", help="create an organization")
    create_org.add_argument("name")
    create_org.add_argument("--qualtrics-enabled", action="store_true")
    create_org.set_defaults(handler=cmd_create_org)

    set_enabled = commands.add_parser(
        "set-qualtrics-enabled", help="allow or forbid Qualtrics integrations for an organization"
    )
    set_enabled.add_argument("org", type=_uuid)
    set_enabled.add_argument("state", choices=["on", "off"])
    set_enabled.set_defaults(handler=cmd_set_qualtrics_enabled)

    create_user = commands.add_parser("create-user", help="create a user in an organization")
    create_user.add_argument("--org", type=_uuid, required=True)
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--password", required=True)
    create_user.add_argument("--role", choices=[role.value for role in Role], default="viewer")
    create_user.set_defaults(handler=cmd_create_user)

    rotate = commands.add_parser(
        "rotate-keys", help="re-encrypt stored secrets under the first key"
    )
    rotate.set_defaults(handler=cmd_rotate_keys)

    openapi = commands.add_parser("openapi", help="print or write the OpenAPI document")
    openapi.add_argument("--output", default="-", help="file to write, or - for stdout")
    openapi.set_defaults(handler=cmd_openapi)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging("INFO", json_lines=args.command in ("api", "worker"))
    if args.command not in ("migrate", "run", "demo"):
        # Schema checks open an Alembic context, which announces itself at INFO.
        logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)
    try:
        settings = get_settings()
        args.handler(args, settings)
    except (ConfigurationError, SchemaOutOfDateError, OrganizationError, CommandError) as exc:
        print(f"service {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
