"""Single responses: create, get and delete (qualtrics-api.md §5.1).

Not served: `PUT /responses/{id}`, `GET .../response-schema`, file uploads (multipart create)
and the bulk `import-responses` calls, because the connector creates responses one by one.
"""

from starlette.responses import Response

from .context import ApiContext, api_endpoint
from .envelope import bad_request, not_found, ok
from .responses import validate_values
from .spec import RESPONSE_ID
from .surveys import StoredResponse, Survey

NOT_YET_AVAILABLE = "The Survey Response is not yet available. Please try again later."


@api_endpoint
def create_response(ctx: ApiContext) -> Response:
    """`{"values": {...}}` → `{"responseId": "R_..."}`; a repeated `Idempotency-Key` answers
    the response the first request created and stores nothing new."""
    survey = ctx.survey()
    body = ctx.json_object()
    key = ctx.request.headers.get("idempotency-key") or None
    earlier = None if key is None else survey.response_for_key(key)
    if earlier is not None:
        return ok({"responseId": earlier.response_id})
    values = body.get("values")
    if not isinstance(values, dict):
        raise bad_request("values is required and must be an object")
    if ctx.fake.config.require_active_survey_for_responses and not survey.is_active:
        raise bad_request("The survey is not active")
    if ctx.fake.config.strict_response_values:
        validate_values(values, survey.questions, survey.embedded_field_names())
    response = survey.add_response(values, key, ctx.now)
    return ok({"responseId": response.response_id})


@api_endpoint
def get_response(ctx: ApiContext) -> Response:
    """202 "not yet available" for `response_visibility_delay_seconds` after creation [S]."""
    response = _response(ctx, ctx.survey())
    age = (ctx.now - response.recorded_at).total_seconds()
    if age < ctx.fake.config.response_visibility_delay_seconds:
        return ok({"message": NOT_YET_AVAILABLE}, status=202)
    return ok(response.as_result())


@api_endpoint
def delete_response(ctx: ApiContext) -> Response:
    survey = ctx.survey()
    survey.delete_response(_response(ctx, survey).response_id)
    return ok()


def _response(ctx: ApiContext, survey: Survey) -> StoredResponse:
    response = survey.responses.get(ctx.path_id("responseId", RESPONSE_ID))
    if response is None:
        raise not_found()
    return response
