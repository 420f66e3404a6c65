from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service.db import SessionDep
from service.observability.metrics import REGISTRY, refresh_queue_gauges

router = APIRouter(tags=["health"])


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics."}},
)
async def get_metrics(session: SessionDep) -> Response:
    """Intake counts and latency, deliveries by outcome and status, queue age, 429s."""
    await refresh_queue_gauges(session)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
