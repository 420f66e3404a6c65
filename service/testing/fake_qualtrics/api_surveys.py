"""Survey endpoints: `/survey-definitions/...` (qualtrics-api.md §4) and the legacy
`/surveys` list, get, update and delete.

Not served (they answer 404 like any unknown route): creating a survey from a QSF document,
`?format=qsf`, `PUT .../flow/{flowId}`, options, quotas, languages, translations, block update
and delete. The connector does not use them.

[U] choices: `PUT /surveys/{id}` and `PUT .../metadata` refuse unknown or wrongly-cased fields
and empty bodies; `GET /surveys` pages with `?offset=` and `nextPage` as a full URL; a new block
must have no `BlockElements` yet (add questions with `?blockId=`).
"""

from collections.abc import Callable, Mapping
from typing import Any

from starlette.responses import Response

from .clock import mysql
from .context import ApiContext, api_endpoint
from .envelope import JsonObject, bad_request, not_found, ok
from .flow import validate_flow
from .questions import validate_question
from .spec import (
    BLOCK_ID,
    LANGUAGE_CODES,
    MYSQL_DATETIME,
    PROJECT_CATEGORIES,
    SHORT_TEXT_MAX,
    SURVEY_STATUSES_SETTABLE,
    VERSION_ID,
)
from .surveys import Survey

FieldCheck = Callable[[str, Any], None]


def _check_fields(body: JsonObject, checks: Mapping[str, FieldCheck]) -> None:
    """Refuse an empty body, unknown (or wrongly-cased) fields and invalid values."""
    if not body:
        raise bad_request(f"At least one of {', '.join(checks)} is required")
    for name, value in body.items():
        check = checks.get(name)
        if check is None:
            raise bad_request(f"Unknown field {name!r}; expected one of {', '.join(checks)}")
        check(name, value)


def _non_empty_string(name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"{name} must be a non-empty string")


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be a boolean")


def _optional_string(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise bad_request(f"{name} must be a string or null")


def _mysql_datetime(name: str, value: Any) -> None:
    if not isinstance(value, str) or not MYSQL_DATETIME.fullmatch(value):
        raise bad_request(f"{name} must be a MySQL date-time 'YYYY-MM-DD HH:MM:SS'")


def _survey_status(name: str, value: Any) -> None:
    if value not in SURVEY_STATUSES_SETTABLE:
        raise bad_request(f"{name} must be one of {', '.join(sorted(SURVEY_STATUSES_SETTABLE))}")


def _expiration(name: str, value: Any) -> None:
    if not isinstance(value, dict) or not set(value) <= {"startDate", "endDate"}:
        raise bad_request(f"{name} must be an object with startDate and/or endDate")
    for key, date in value.items():
        _optional_string(f"{name}.{key}", date)


# Legacy surveys


@api_endpoint
def list_surveys(ctx: ApiContext) -> Response:
    raw_offset = ctx.request.query_params.get("offset", "0")
    if not raw_offset.isdecimal():
        raise bad_request("offset must be a non-negative integer")
    offset, size = int(raw_offset), ctx.fake.config.list_page_size
    mine = [s for s in ctx.fake.surveys.values() if s.brand_id == ctx.account.brand_id]
    next_page = None
    if offset + size < len(mine):
        next_page = str(ctx.request.url.include_query_params(offset=offset + size))
    page = [survey.summary() for survey in mine[offset : offset + size]]
    return ok({"elements": page, "nextPage": next_page})


@api_endpoint
def get_survey(ctx: ApiContext) -> Response:
    return ok(ctx.survey().legacy_view())


@api_endpoint
def update_survey(ctx: ApiContext) -> Response:
    """`{"isActive": bool, "name": str, "expiration": {...}}`, any of them [C]."""
    survey = ctx.survey()
    body = ctx.json_object()
    checks = {"isActive": _boolean, "name": _non_empty_string, "expiration": _expiration}
    _check_fields(body, checks)
    if "isActive" in body:
        survey.set_active(body["isActive"], ctx.now)
    survey.name = body.get("name", survey.name)
    expiration = body.get("expiration", {})
    survey.start_date = expiration.get("startDate", survey.start_date)
    survey.expiration_date = expiration.get("endDate", survey.expiration_date)
    survey.last_modified = ctx.now
    return ok()


@api_endpoint
def delete_survey(ctx: ApiContext) -> Response:
    """Both delete routes: afterwards every call for the survey answers 404 [S/C]."""
    survey = ctx.survey()
    ctx.fake.delete_survey(survey.survey_id)
    return ok({"DeletedDate": mysql(ctx.now)})


# Survey definitions


@api_endpoint
def create_survey(ctx: ApiContext) -> Response:
    body = ctx.json_object()
    _non_empty_string("SurveyName", body.get("SurveyName"))
    if body.get("Language") not in LANGUAGE_CODES:
        raise bad_request(f"Invalid or missing Language {body.get('Language')!r}")
    if body.get("ProjectCategory") not in PROJECT_CATEGORIES:
        raise bad_request(f"Invalid or missing ProjectCategory {body.get('ProjectCategory')!r}")
    survey = Survey.new(
        name=body["SurveyName"],
        language=body["Language"],
        project_category=body["ProjectCategory"],
        owner=ctx.account,
        now=ctx.now,
    )
    ctx.fake.add_survey(survey)
    return ok({"SurveyID": survey.survey_id, "DefaultBlockID": survey.default_block_id})


@api_endpoint
def get_definition(ctx: ApiContext) -> Response:
    return ok(ctx.survey().definition())


@api_endpoint
def get_metadata(ctx: ApiContext) -> Response:
    return ok(ctx.survey().metadata())


@api_endpoint
def update_metadata(ctx: ApiContext) -> Response:
    survey = ctx.survey()
    body = ctx.json_object()
    checks = {
        "SurveyName": _non_empty_string,
        "SurveyDescription": _optional_string,
        "SurveyStatus": _survey_status,
        "SurveyStartDate": _mysql_datetime,
        "SurveyExpirationDate": _mysql_datetime,
    }
    _check_fields(body, checks)
    if "SurveyStatus" in body:
        survey.set_active(body["SurveyStatus"] == "Active", ctx.now)
    survey.name = body.get("SurveyName", survey.name)
    survey.description = body.get("SurveyDescription", survey.description)
    survey.start_date = body.get("SurveyStartDate", survey.start_date)
    survey.expiration_date = body.get("SurveyExpirationDate", survey.expiration_date)
    survey.last_modified = ctx.now
    return ok()


@api_endpoint
def create_block(ctx: ApiContext) -> Response:
    survey = ctx.survey()
    body = ctx.json_object()
    if body.get("Type") != "Standard":
        raise bad_request("Type must be 'Standard'")
    description = body.get("Description")
    if not isinstance(description, str) or len(description) > SHORT_TEXT_MAX:
        raise bad_request(f"Description is required: a string of at most {SHORT_TEXT_MAX}")
    if body.get("BlockElements"):
        raise bad_request("Create the block empty, then add questions with ?blockId=")
    block_id, flow_id = survey.add_block(description, ctx.now)
    return ok({"BlockID": block_id, "FlowID": flow_id})


@api_endpoint
def get_block(ctx: ApiContext) -> Response:
    survey = ctx.survey()
    block = survey.definition()["Blocks"].get(ctx.path_id("blockId", BLOCK_ID))
    if block is None:
        raise not_found()
    return ok(block)


@api_endpoint
def list_questions(ctx: ApiContext) -> Response:
    questions = ctx.survey().definition()["Questions"]
    return ok({"elements": list(questions.values())})


@api_endpoint
def create_question(ctx: ApiContext) -> Response:
    """Into the default block, or the `?blockId=` one (400 if malformed, 404 if unknown)."""
    survey = ctx.survey()
    block_id = ctx.request.query_params.get("blockId", survey.default_block_id)
    if not BLOCK_ID.matches(block_id):
        raise bad_request(f"Invalid block ID: {block_id!r}")
    if block_id not in survey.blocks:
        raise not_found()
    strict = ctx.fake.config.strict_question_types
    question = validate_question(ctx.json_object(), strict_types=strict)
    return ok({"QuestionID": survey.add_question(question, block_id, ctx.now)})


@api_endpoint
def get_question(ctx: ApiContext) -> Response:
    survey = ctx.survey()
    return ok(survey.definition()["Questions"][ctx.question(survey)])


@api_endpoint
def update_question(ctx: ApiContext) -> Response:
    survey = ctx.survey()
    question_id = ctx.question(survey)
    strict = ctx.fake.config.strict_question_types
    question = validate_question(ctx.json_object(), strict_types=strict)
    survey.replace_question(question_id, question, ctx.now)
    return ok()


@api_endpoint
def delete_question(ctx: ApiContext) -> Response:
    survey = ctx.survey()
    survey.delete_question(ctx.question(survey), ctx.now)
    return ok()


@api_endpoint
def get_flow(ctx: ApiContext) -> Response:
    return ok(ctx.survey().definition()["SurveyFlow"])


@api_endpoint
def update_flow(ctx: ApiContext) -> Response:
    """Replaces the whole flow; GET then returns exactly this body."""
    survey = ctx.survey()
    survey.replace_flow(validate_flow(ctx.json_object(), survey.blocks), ctx.now)
    return ok()


@api_endpoint
def list_versions(ctx: ApiContext) -> Response:
    versions = reversed(ctx.survey().versions)
    return ok({"elements": [version.metadata() for version in versions]})


@api_endpoint
def create_version(ctx: ApiContext) -> Response:
    """`{"Description": str, "Published": bool}`, both required [S]."""
    survey = ctx.survey()
    body = ctx.json_object()
    if not isinstance(body.get("Description"), str):
        raise bad_request("Description is required and must be a string")
    if not isinstance(body.get("Published"), bool):
        raise bad_request("Published is required and must be a boolean")
    version = survey.add_version(
        description=body["Description"],
        published=body["Published"],
        user_id=ctx.account.user_id,
        now=ctx.now,
    )
    return ok({"metadata": version.metadata()})


@api_endpoint
def get_version(ctx: ApiContext) -> Response:
    survey = ctx.survey()
    version_id = ctx.path_id("versionId", VERSION_ID)
    for version in survey.versions:
        if version.version_id == version_id:
            return ok(version.definition)
    raise not_found()
