"""Assertions and request bodies shared by the fake-Qualtrics tests."""

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

CLIENT_ID = "creovai-client"
CLIENT_SECRET = "s3cret"
SUBDOMAIN = "acme"
BRAND_ID = "acmebrand"
HTTP_STATUS = re.compile(r"[1-5][0-9]{2} - [A-Za-z' -]+")
MC_YES_NO = {"1": {"Display": "Yes"}, "2": {"Display": "No"}}


@dataclass(frozen=True)
class SurveyRef:
    id: str
    default_block_id: str


SurveyFactory = Callable[..., Awaitable[SurveyRef]]


async def fetch_token(
    http: httpx.AsyncClient, subdomain: str = SUBDOMAIN, secret: str = CLIENT_SECRET
) -> httpx.Response:
    return await http.post(
        f"/{subdomain}/oauth2/token",
        auth=(CLIENT_ID, secret),
        data={"grant_type": "client_credentials"},
    )


def assert_meta(meta: dict[str, Any], status: int) -> None:
    assert HTTP_STATUS.fullmatch(meta["httpStatus"]), meta
    assert meta["httpStatus"].startswith(f"{status} - ")
    assert uuid.UUID(meta["requestId"]).version == 4


def result_of(response: httpx.Response, status: int = 200) -> Any:
    """The `result` of a success envelope with this status."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"result", "meta"}, body
    assert_meta(body["meta"], status)
    assert "error" not in body["meta"]
    return body["result"]


def assert_meta_only(response: httpx.Response) -> None:
    """The success body of PUT and DELETE: `meta` and nothing else."""
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"meta"}, body
    assert_meta(body["meta"], 200)


def error_of(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """`meta.error` of an error envelope (which has no `result`)."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"meta"}, body
    assert_meta(body["meta"], status)
    error: dict[str, Any] = body["meta"]["error"]
    assert isinstance(error["errorMessage"], str)
    if code is not None:
        assert error["errorCode"] == code
    return error


def mc_question(selector: str = "SAVR", **extra: Any) -> dict[str, Any]:
    return {
        "QuestionText": "Did it happen?",
        "QuestionType": "MC",
        "Selector": selector,
        "SubSelector": "TX",
        "Configuration": {"QuestionDescriptionOption": "UseText"},
        "QuestionDescription": "Did it happen?",
        "Choices": MC_YES_NO,
        "ChoiceOrder": ["1", "2"],
        "Validation": {"Settings": {"ForceResponse": "OFF", "Type": "None"}},
        "Language": [],
        **extra,
    }


def te_question(**extra: Any) -> dict[str, Any]:
    return {
        "QuestionText": "Agent name",
        "QuestionType": "TE",
        "Selector": "SL",
        "Configuration": {"QuestionDescriptionOption": "UseText"},
        "QuestionDescription": "Agent name",
        "Validation": {"Settings": {"ForceResponse": "OFF", "Type": "None"}},
        "Language": [],
        **extra,
    }


def embedded_item(field: str, variable_type: str = "String", **extra: Any) -> dict[str, Any]:
    return {
        "Description": field,
        "Type": "Custom",
        "Field": field,
        "VariableType": variable_type,
        "DataVisibility": [],
        **extra,
    }


def flow_with_embedded(default_block_id: str, *items: dict[str, Any]) -> dict[str, Any]:
    """The reference's flow shape: EmbeddedData first, then the default block."""
    return {
        "FlowID": "FL_1",
        "Type": "Root",
        "Properties": {"Count": 3},
        "Flow": [
            {"Type": "EmbeddedData", "FlowID": "FL_3", "EmbeddedData": list(items)},
            {"Type": "Block", "ID": default_block_id, "FlowID": "FL_2"},
        ],
    }
