"""Checking create-response `values` against the survey (qualtrics-api.md §5.1).

With `strict_response_values` (the default) every key of `values` must be one of:

* a response metadata field, with its type: `startDate`/`endDate` (ISO 8601 date-times),
  `finished` (0 or 1), `progress` (integer 0 to 100), `duration` (integer seconds ≥ 0),
  `distributionChannel` (string), `userLanguage` (a LanguageCode of the spec [U]),
  `locationLatitude`/`locationLongitude` (strings or numbers [U]);
* `QIDn` of a question of the survey: for MC single answer a choice id (integer or numeric
  string) of the question, for MC multiple answer (`MAVR`, `MAHR`, `MACOL`, `MSB`) an array of
  distinct choice ids [C/U]; a TE question must use `QIDn_TEXT` instead, a DB question takes
  no answer, other types are not checked;
* `QIDn_TEXT` of a TE question, with a string or number;
* a field declared in an EmbeddedData element of the flow, with a string or number [U: whether
  undeclared fields are refused or silently dropped by the real API].

Everything else (e.g. `QIDn_DO`, `status`, `recordedDate`, undeclared embedded data) is a 400.
"""

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from .envelope import JsonObject, bad_request
from .questions import choice_ids
from .spec import LANGUAGE_CODES, MULTI_ANSWER_SELECTORS

_QUESTION_KEY = re.compile(r"(QID[0-9]+)(_TEXT)?")

ValueCheck = Callable[[str, Any], None]


def validate_values(
    values: JsonObject, questions: dict[str, JsonObject], embedded_fields: set[str]
) -> None:
    """Raise a 400 naming the first key of `values` the survey does not accept."""
    for key, value in values.items():
        metadata_check = _METADATA_CHECKS.get(key)
        question_key = _QUESTION_KEY.fullmatch(key)
        if metadata_check is not None:
            metadata_check(key, value)
        elif question_key is not None:
            question_id, text_suffix = question_key.groups()
            _check_answer(key, value, questions.get(question_id), text=text_suffix is not None)
        elif key in embedded_fields:
            _check_scalar(key, value)
        else:
            raise bad_request(
                f"Unknown field {key!r} in values: not a question of this survey, an embedded "
                "data field declared in its flow, or a response metadata field"
            )


def _check_answer(key: str, value: Any, question: JsonObject | None, *, text: bool) -> None:
    if question is None:
        raise bad_request(f"{key}: no such question in this survey")
    question_type = question["QuestionType"]
    if text:
        if question_type != "TE":
            raise bad_request(f"{key}: only text-entry questions take a _TEXT value")
        _check_scalar(key, value)
    elif question_type == "TE":
        raise bad_request(f"{key}: a text-entry question is answered as {key}_TEXT")
    elif question_type == "DB":
        raise bad_request(f"{key}: a descriptive-text question takes no answer")
    elif question_type == "MC":
        _check_choice_answer(key, value, question)


def _check_choice_answer(key: str, value: Any, question: JsonObject) -> None:
    allowed = choice_ids(question)
    if question["Selector"] not in MULTI_ANSWER_SELECTORS:
        _check_choice_id(key, value, allowed)
        return
    if not isinstance(value, list):
        raise bad_request(f"{key}: a multiple-answer question takes an array of choice ids")
    chosen = [_check_choice_id(key, item, allowed) for item in value]
    if len(set(chosen)) != len(chosen):
        raise bad_request(f"{key}: a choice id appears twice")


def _check_choice_id(key: str, value: Any, allowed: set[str]) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str) or str(value) not in allowed:
        raise bad_request(
            f"{key}: {value!r} is not a choice id of the question "
            f"(choices: {', '.join(sorted(allowed, key=_numeric_first))})"
        )
    return str(value)


def _numeric_first(choice: str) -> tuple[int, str]:
    return (int(choice), "") if choice.isdecimal() else (0, choice)


def _check_scalar(key: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise bad_request(f"{key}: expected a string or a number, got {value!r}")


def _check_date_time(key: str, value: Any) -> None:
    try:
        datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise bad_request(f"{key}: expected an ISO 8601 date-time, got {value!r}") from None


def _integer_check(low: int, high: int | None) -> ValueCheck:
    def check(key: str, value: Any) -> None:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if not is_int or value < low or (high is not None and value > high):
            upper = "" if high is None else f" to {high}"
            raise bad_request(f"{key}: expected an integer from {low}{upper}, got {value!r}")

    return check


def _check_string(key: str, value: Any) -> None:
    if not isinstance(value, str):
        raise bad_request(f"{key}: expected a string, got {value!r}")


def _check_language(key: str, value: Any) -> None:
    if value not in LANGUAGE_CODES:
        raise bad_request(f"{key}: {value!r} is not a Qualtrics language code")


_METADATA_CHECKS: dict[str, ValueCheck] = {
    "startDate": _check_date_time,
    "endDate": _check_date_time,
    "finished": _integer_check(0, 1),
    "progress": _integer_check(0, 100),
    "duration": _integer_check(0, None),
    "distributionChannel": _check_string,
    "userLanguage": _check_language,
    "locationLatitude": _check_scalar,
    "locationLongitude": _check_scalar,
}
