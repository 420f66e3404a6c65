"""The intake baseline: a bare FastAPI endpoint that verifies the same Standard Webhooks
signature with `standardwebhooks` and validates the same body with the same pydantic model as
the product, but stores nothing (issue 6, item 1).

Served exactly like `service api`: `uvicorn --factory`, one worker, the same options, the
same log level. `python -m bench.bare_intake --port P` with `BENCH_WEBHOOK_SECRET` set.
"""

import argparse
import os

import uvicorn
from fastapi import FastAPI, Request, Response
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.webhooks.schemas import event_adapter


def create_app() -> FastAPI:
    # Built once, as the product caches its verifiers (service.webhooks.signing_secrets).
    verifier = Webhook(os.environ["BENCH_WEBHOOK_SECRET"])
    app = FastAPI()

    @app.post("/v1/webhooks/{organization_id}/interactions", status_code=202)
    async def receive(
        organization_id: str, request: Request, response: Response
    ) -> dict[str, object]:
        body = await request.body()
        try:
            verifier.verify(body, dict(request.headers), json_parse=False)
        except WebhookVerificationError:
            response.status_code = 401
            return {"detail": "bad signature"}
        event = event_adapter.validate_json(body)
        return {"status": "accepted", "type": event.type}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        "bench.bare_intake:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        proxy_headers=True,
        log_level="info",
    )


if __name__ == "__main__":
    main()
