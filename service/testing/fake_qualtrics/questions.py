"""Validating question definitions of `POST`/`PUT .../questions` (qualtrics-api.md §4.2).

Always checked: the body is an object with a `QuestionText` of ≤ 1000 chars, a `QuestionType`
from the spec enum and a `Selector`; an MC question has a non-empty `Choices` object keyed by
numeric ids, and its `ChoiceOrder` / `RecodeValues` only name those ids.

With `strict_question_types` (the default) the type/selector combination is checked per spec
variant (`spec.SELECTORS_BY_TYPE`): e.g. MC needs an MC selector and a SubSelector from the MC
list, TE and DB take no SubSelector, and Matrix/TE/Slider/DB descriptions are ≤ 100 chars. The
spec's own `anyOf` is looser than that; how strict the real API is is [U], hence the switch,
which falls back to the global Selector/SubSelector enums.
"""

import re
from typing import Any

from .envelope import JsonObject, bad_request
from .spec import (
    QUESTION_TEXT_MAX,
    QUESTION_TYPES,
    REQUIRED_SUB_SELECTORS_BY_TYPE,
    SELECTORS,
    SELECTORS_BY_TYPE,
    SHORT_TEXT_MAX,
    SUB_SELECTORS,
    TYPES_WITH_SHORT_DESCRIPTION,
    TYPES_WITHOUT_SUB_SELECTOR,
)

_CHOICE_KEY = re.compile(r"[0-9]+")
_ANY_SELECTOR = SELECTORS.union(*SELECTORS_BY_TYPE.values())
_ANY_SUB_SELECTOR = SUB_SELECTORS.union(*REQUIRED_SUB_SELECTORS_BY_TYPE.values())


def validate_question(body: object, *, strict_types: bool) -> JsonObject:
    """Return the body if it is an acceptable question definition; 400 otherwise."""
    if not isinstance(body, dict):
        raise bad_request("The question definition must be a JSON object")
    text = body.get("QuestionText")
    if not isinstance(text, str) or len(text) > QUESTION_TEXT_MAX:
        raise bad_request(f"QuestionText is required: a string of at most {QUESTION_TEXT_MAX}")
    question_type = body.get("QuestionType")
    if question_type not in QUESTION_TYPES:
        raise bad_request(f"Invalid QuestionType {question_type!r}")
    if strict_types:
        _check_combination(question_type, body.get("Selector"), body.get("SubSelector"))
        _check_description(question_type, body.get("QuestionDescription"))
    else:
        _check_global_enums(body.get("Selector"), body.get("SubSelector"))
    if "DataExportTag" in body and not isinstance(body["DataExportTag"], str):
        raise bad_request("DataExportTag must be a string")
    if question_type == "MC":
        _check_choices(body)
    return body


def _check_combination(question_type: str, selector: Any, sub_selector: Any) -> None:
    allowed = SELECTORS_BY_TYPE.get(question_type, SELECTORS)
    if selector not in allowed:
        raise bad_request(
            f"Selector {selector!r} is not valid for QuestionType {question_type}; "
            f"expected one of {', '.join(sorted(allowed))}"
        )
    required = REQUIRED_SUB_SELECTORS_BY_TYPE.get(question_type)
    if required is not None and sub_selector not in required:
        raise bad_request(
            f"SubSelector {sub_selector!r} is not valid for QuestionType {question_type}; "
            f"expected one of {', '.join(sorted(required))}"
        )
    if question_type in TYPES_WITHOUT_SUB_SELECTOR and sub_selector is not None:
        raise bad_request(f"QuestionType {question_type} takes no SubSelector")
    if required is None and sub_selector is not None and sub_selector not in SUB_SELECTORS:
        raise bad_request(f"Invalid SubSelector {sub_selector!r}")


def _check_global_enums(selector: Any, sub_selector: Any) -> None:
    if selector not in _ANY_SELECTOR:
        raise bad_request(f"Invalid Selector {selector!r}")
    if sub_selector is not None and sub_selector not in _ANY_SUB_SELECTOR:
        raise bad_request(f"Invalid SubSelector {sub_selector!r}")


def _check_description(question_type: str, description: Any) -> None:
    if description is None:
        return
    if not isinstance(description, str):
        raise bad_request("QuestionDescription must be a string")
    if question_type in TYPES_WITH_SHORT_DESCRIPTION and len(description) > SHORT_TEXT_MAX:
        raise bad_request(f"QuestionDescription is longer than {SHORT_TEXT_MAX} characters")


def _check_choices(body: JsonObject) -> None:
    choices = body.get("Choices")
    if not isinstance(choices, dict) or not choices:
        raise bad_request("A multiple-choice question needs a non-empty Choices object")
    for key, choice in choices.items():
        if not _CHOICE_KEY.fullmatch(key) or not isinstance(choice, dict):
            raise bad_request(f"Choices must map numeric ids to objects; got {key!r}")
    order = body.get("ChoiceOrder", [])
    if not isinstance(order, list) or any(str(item) not in choices for item in order):
        raise bad_request("ChoiceOrder must list ids of Choices")
    recodes = body.get("RecodeValues", {})
    if not isinstance(recodes, dict) or any(key not in choices for key in recodes):
        raise bad_request("RecodeValues must map ids of Choices to values")


def choice_ids(question: JsonObject) -> set[str]:
    """What a response may send for an MC question: its choice ids and their recode values
    [U: the reference has both "choice id" and "recode value"; both are accepted].
    """
    recodes = question.get("RecodeValues", {})
    return set(question["Choices"]) | {str(value) for value in recodes.values()}
