"""Creating, reading and deleting single responses."""

import asyncio
import re
from typing import Any

import httpx
import pytest

from service.testing.fake_qualtrics import FakeQualtrics

from .helpers import (
    SurveyRef,
    assert_meta_only,
    embedded_item,
    error_of,
    flow_with_embedded,
    mc_question,
    result_of,
    te_question,
)

VALID_VALUES: dict[str, Any] = {
    "startDate": "2024-05-01T10:00:00Z",
    "endDate": "2024-05-01T10:04:00+00:00",
    "finished": 1,
    "progress": 100,
    "duration": 240,
    "distributionChannel": "anonymous",
    "userLanguage": "EN",
    "locationLatitude": "51.5",
    "locationLongitude": -0.12,
    "QID1": 2,
    "QID2_TEXT": "free text",
    "QID3": [1, "2"],
    "cohort": "A",
    "score": 4.6,
}


@pytest.fixture
async def built(api: httpx.AsyncClient, survey: SurveyRef) -> SurveyRef:
    """A survey as the connector builds it: MC single (QID1), TE (QID2), MC multi (QID3),
    MC single with recodes (QID4), and embedded fields `cohort` and `score`."""
    path = f"/survey-definitions/{survey.id}"
    for body in (
        mc_question(),
        te_question(),
        mc_question("MAVR"),
        mc_question(RecodeValues={"1": "10", "2": "20"}),
    ):
        result_of(await api.post(f"{path}/questions", json=body))
    flow = flow_with_embedded(
        survey.default_block_id, embedded_item("cohort", "Nominal"), embedded_item("score", "Scale")
    )
    assert_meta_only(await api.put(f"{path}/flow", json=flow))
    return survey


async def create(
    api: httpx.AsyncClient, survey: SurveyRef, body: Any, key: str | None = None
) -> httpx.Response:
    headers = {} if key is None else {"Idempotency-Key": key}
    return await api.post(f"/surveys/{survey.id}/responses", json=body, headers=headers)


class TestCreateResponse:
    async def test_a_valid_response_is_stored_and_readable(
        self, api: httpx.AsyncClient, built: SurveyRef, fake: FakeQualtrics
    ) -> None:
        response_id = result_of(await create(api, built, {"values": VALID_VALUES}))["responseId"]

        assert re.fullmatch(r"R_[a-zA-Z0-9]{15}", response_id)
        [stored] = fake.responses(built.id)
        assert stored.response_id == response_id
        assert stored.submitted == VALID_VALUES
        read = result_of(await api.get(f"/surveys/{built.id}/responses/{response_id}"))
        assert read["responseId"] == response_id
        assert read["values"]["QID2_TEXT"] == "free text"
        assert read["values"]["recordedDate"].endswith("Z")
        assert {"startDate", "endDate", "status", "finished"} <= set(read["values"])

    async def test_minimal_body_gets_server_side_defaults(
        self, api: httpx.AsyncClient, built: SurveyRef, fake: FakeQualtrics
    ) -> None:
        fake.set_clock(fake.now().replace(microsecond=0))
        response_id = result_of(await create(api, built, {"values": {}}))["responseId"]

        values = result_of(await api.get(f"/surveys/{built.id}/responses/{response_id}"))["values"]

        assert values["recordedDate"] == fake.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        assert values["startDate"] == values["recordedDate"]
        assert values["finished"] == 1

    @pytest.mark.parametrize(
        "values",
        [
            {"QID1": "1"},
            {"QID4": 10},
            {"QID4": "2"},
            {"QID3": []},
            {"QID2_TEXT": 7},
            {"score": "42"},
            {"cohort": ""},
            {"finished": 0},
        ],
    )
    async def test_accepted_value_forms(
        self, api: httpx.AsyncClient, built: SurveyRef, values: dict[str, Any]
    ) -> None:
        result_of(await create(api, built, {"values": values}))

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ([], "JSON object"),
            ({}, "values is required"),
            ({"Values": {}}, "values is required"),
            ({"values": []}, "values is required"),
            ({"values": {"QID9": 1}}, "no such question"),
            ({"values": {"QID9_TEXT": "x"}}, "no such question"),
            ({"values": {"QID1_TEXT": "x"}}, "only text-entry"),
            ({"values": {"QID2": "x"}}, "QID2_TEXT"),
            ({"values": {"QID1": 3}}, "not a choice id"),
            ({"values": {"QID1": "Yes"}}, "not a choice id"),
            ({"values": {"QID1": True}}, "not a choice id"),
            ({"values": {"QID1": 1.0}}, "not a choice id"),
            ({"values": {"QID1": [1]}}, "not a choice id"),
            ({"values": {"QID3": 1}}, "array of choice ids"),
            ({"values": {"QID3": [1, 5]}}, "not a choice id"),
            ({"values": {"QID3": [1, "1"]}}, "twice"),
            ({"values": {"QID2_TEXT": None}}, "string or a number"),
            ({"values": {"QID2_TEXT": ["a"]}}, "string or a number"),
            ({"values": {"undeclared": "x"}}, "Unknown field"),
            ({"values": {"cohort": None}}, "string or a number"),
            ({"values": {"cohort": {"a": 1}}}, "string or a number"),
            ({"values": {"cohort": True}}, "string or a number"),
            ({"values": {"status": 0}}, "Unknown field"),
            ({"values": {"recordedDate": "2024-05-01T10:00:00Z"}}, "Unknown field"),
            ({"values": {"QID1_DO": ["1", "2"]}}, "Unknown field"),
            ({"values": {"startDate": "yesterday"}}, "ISO 8601"),
            ({"values": {"endDate": 1714557600}}, "ISO 8601"),
            ({"values": {"finished": 2}}, "from 0 to 1"),
            ({"values": {"finished": True}}, "from 0 to 1"),
            ({"values": {"progress": 101}}, "from 0 to 100"),
            ({"values": {"duration": -1}}, "from 0"),
            ({"values": {"duration": 1.5}}, "integer"),
            ({"values": {"distributionChannel": 1}}, "expected a string"),
            ({"values": {"userLanguage": "eng"}}, "language code"),
            ({"values": {"locationLatitude": None}}, "string or a number"),
        ],
    )
    async def test_strict_values_refuse_what_the_survey_does_not_define(
        self,
        api: httpx.AsyncClient,
        built: SurveyRef,
        fake: FakeQualtrics,
        body: Any,
        message: str,
    ) -> None:
        error = error_of(await create(api, built, body), 400, "MSTC_1")

        assert message in error["errorMessage"]
        assert fake.responses(built.id) == []

    @pytest.mark.parametrize(
        "raw", [b'{"values": {"score": NaN}}', b'{"values": {"cohort": "\\ud800"}}', b"{"]
    )
    async def test_bodies_that_are_not_json_are_400(
        self, api: httpx.AsyncClient, built: SurveyRef, fake: FakeQualtrics, raw: bytes
    ) -> None:
        response = await api.post(f"/surveys/{built.id}/responses", content=raw)

        error_of(response, 400)
        assert fake.responses(built.id) == []

    async def test_a_descriptive_text_question_takes_no_answer(
        self, api: httpx.AsyncClient, built: SurveyRef
    ) -> None:
        text = {"QuestionText": "Thanks", "QuestionType": "DB", "Selector": "TB"}
        result_of(await api.post(f"/survey-definitions/{built.id}/questions", json=text))

        error_of(await create(api, built, {"values": {"QID5": "x"}}), 400)

    async def test_lenient_mode_stores_any_values_object(
        self, api: httpx.AsyncClient, built: SurveyRef, fake: FakeQualtrics
    ) -> None:
        fake.config.strict_response_values = False

        result_of(await create(api, built, {"values": {"anything": [1], "QID1": 99}}))
        error_of(await create(api, built, {"values": "x"}), 400)

    async def test_inactive_surveys_can_be_made_to_refuse_responses(
        self, api: httpx.AsyncClient, built: SurveyRef, fake: FakeQualtrics
    ) -> None:
        fake.config.require_active_survey_for_responses = True

        error_of(await create(api, built, {"values": {}}), 400)
        await api.put(f"/surveys/{built.id}", json={"isActive": True})
        result_of(await create(api, built, {"values": {}}))


class TestIdempotency:
    async def test_the_same_key_answers_the_same_response_without_a_duplicate(
        self, api: httpx.AsyncClient, built: SurveyRef, fake: FakeQualtrics
    ) -> None:
        body = {"values": {"QID1": 1}}

        first = result_of(await create(api, built, body, key="delivery-1"))
        again = result_of(await create(api, built, body, key="delivery-1"))
        other = result_of(await create(api, built, body, key="delivery-2"))

        assert again["responseId"] == first["responseId"]
        assert other["responseId"] != first["responseId"]
        assert len(fake.responses(built.id)) == 2
        assert fake.responses(built.id)[0].idempotency_key == "delivery-1"

    async def test_a_replay_with_a_different_body_answers_the_original(
        self, api: httpx.AsyncClient, built: SurveyRef, fake: FakeQualtrics
    ) -> None:
        first = result_of(await create(api, built, {"values": {"QID1": 1}}, key="k"))
        again = result_of(await create(api, built, {"values": {"QID1": 2}}, key="k"))

        assert again == first
        assert [r.submitted for r in fake.responses(built.id)] == [{"QID1": 1}]

    async def test_without_a_key_every_request_creates_a_response(
        self, api: httpx.AsyncClient, built: SurveyRef, fake: FakeQualtrics
    ) -> None:
        await create(api, built, {"values": {}})
        await create(api, built, {"values": {}})

        assert len(fake.responses(built.id)) == 2

    async def test_concurrent_identical_requests_create_one_response(
        self, api: httpx.AsyncClient, built: SurveyRef, fake: FakeQualtrics
    ) -> None:
        fake.set_latency(0.02)
        body = {"values": {"QID1": 1, "cohort": "B"}}

        answers = await asyncio.gather(
            *(create(api, built, body, key="same-delivery") for _ in range(20))
        )

        ids = {result_of(answer)["responseId"] for answer in answers}
        assert len(ids) == 1
        assert len(fake.responses(built.id)) == 1


class TestReadAndDelete:
    async def test_not_yet_available_for_the_configured_window(
        self, api: httpx.AsyncClient, built: SurveyRef, fake: FakeQualtrics
    ) -> None:
        fake.config.response_visibility_delay_seconds = 5
        fake.set_clock(fake.now())
        response_id = result_of(await create(api, built, {"values": {}}))["responseId"]
        path = f"/surveys/{built.id}/responses/{response_id}"

        early = result_of(await api.get(path), status=202)
        fake.advance_clock(5)

        assert early == {
            "message": "The Survey Response is not yet available. Please try again later."
        }
        assert result_of(await api.get(path))["responseId"] == response_id

    async def test_delete_removes_the_response(
        self, api: httpx.AsyncClient, built: SurveyRef, fake: FakeQualtrics
    ) -> None:
        response_id = result_of(await create(api, built, {"values": {}}, key="k"))["responseId"]
        path = f"/surveys/{built.id}/responses/{response_id}"

        assert_meta_only(await api.delete(path))

        error_of(await api.get(path), 404)
        error_of(await api.delete(path), 404)
        assert fake.responses(built.id) == []
        assert result_of(await create(api, built, {"values": {}}, key="k"))["responseId"] != (
            response_id
        )

    @pytest.mark.parametrize(("response_id", "status"), [("R_000000000000000", 404), ("R_x", 400)])
    async def test_unknown_or_malformed_response_ids(
        self, api: httpx.AsyncClient, built: SurveyRef, response_id: str, status: int
    ) -> None:
        error_of(await api.get(f"/surveys/{built.id}/responses/{response_id}"), status)
