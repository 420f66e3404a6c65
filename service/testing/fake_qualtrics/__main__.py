"""Run the fake as its own process:

    python -m service.testing.fake_qualtrics --host 127.0.0.1 --port 8099 \\
        --account client-id:client-secret:acme[:brand-id] \\
        --config '{"latency_seconds": 0.05}'

Then drive it over HTTP under `/_fake/` (see `control`).
"""

import argparse

import uvicorn

from .app import create_fake_qualtrics_app
from .config import FakeQualtricsConfig


def _account(spec: str) -> tuple[str, str, str, str]:
    parts = spec.split(":")
    if len(parts) not in (3, 4) or not all(parts):
        raise argparse.ArgumentTypeError("expected CLIENT_ID:CLIENT_SECRET:SUBDOMAIN[:BRAND_ID]")
    client_id, client_secret, datacenter = parts[:3]
    return client_id, client_secret, datacenter, parts[3] if len(parts) == 4 else datacenter


def _config(raw: str) -> FakeQualtricsConfig:
    try:
        return FakeQualtricsConfig.model_validate_json(raw)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m service.testing.fake_qualtrics")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument(
        "--account",
        type=_account,
        action="append",
        default=[],
        metavar="CLIENT_ID:CLIENT_SECRET:SUBDOMAIN[:BRAND_ID]",
        help="register an account at start-up (repeatable); the brand defaults to the subdomain",
    )
    parser.add_argument("--config", type=_config, default=None, help="FakeQualtricsConfig as JSON")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    app = create_fake_qualtrics_app(args.config)
    for client_id, client_secret, datacenter, brand_id in args.account:
        app.state.fake.register_account(
            client_id, client_secret, datacenter=datacenter, brand_id=brand_id
        )
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
