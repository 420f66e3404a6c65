"""Survey definitions: create, questions, flow, activation, versions, delete, id formats, list."""

import re
from typing import Any

import httpx
import pytest

from service.testing.fake_qualtrics import FakeQualtrics

from .helpers import (
    SurveyFactory,
    SurveyRef,
    assert_meta_only,
    embedded_item,
    error_of,
    flow_with_embedded,
    mc_question,
    result_of,
    te_question,
)

WELL_FORMED_UNKNOWN_SURVEY = "SV_000000000000000"


def definitions(survey: SurveyRef, suffix: str = "") -> str:
    return f"/survey-definitions/{survey.id}{suffix}"


async def add_question(api: httpx.AsyncClient, survey: SurveyRef, body: dict[str, Any]) -> str:
    question_id: str = result_of(await api.post(definitions(survey, "/questions"), json=body))[
        "QuestionID"
    ]
    return question_id


class TestCreateSurvey:
    async def test_a_new_survey_is_inactive_with_default_and_trash_blocks_and_root_flow(
        self, api: httpx.AsyncClient, survey: SurveyRef
    ) -> None:
        definition = result_of(await api.get(definitions(survey)))

        assert re.fullmatch(r"SV_[a-zA-Z0-9]{15}", survey.id)
        assert re.fullmatch(r"BL_[a-zA-Z0-9]{15}", survey.default_block_id)
        assert definition["SurveyID"] == survey.id
        assert definition["SurveyName"] == "Connector test"
        assert definition["SurveyStatus"] == "Inactive"
        assert definition["ProjectInfo"]["ProjectCategory"] == "CORE"
        block_types = {block["Type"] for block in definition["Blocks"].values()}
        assert block_types == {"Default", "Trash"}
        assert definition["Blocks"][survey.default_block_id]["Type"] == "Default"
        assert definition["SurveyFlow"] == {
            "FlowID": "FL_1",
            "Type": "Root",
            "Flow": [{"ID": survey.default_block_id, "Type": "Block", "FlowID": "FL_2"}],
            "Properties": {"Count": 2},
        }

    @pytest.mark.parametrize(
        "body",
        [
            {"Language": "EN", "ProjectCategory": "CORE"},
            {"SurveyName": "x", "ProjectCategory": "CORE"},
            {"SurveyName": "x", "Language": "EN"},
            {"SurveyName": "x", "Language": "english", "ProjectCategory": "CORE"},
            {"SurveyName": "x", "Language": "EN", "ProjectCategory": "SURVEY"},
            {"surveyName": "x", "Language": "EN", "ProjectCategory": "CORE"},
            {"SurveyName": "", "Language": "EN", "ProjectCategory": "CORE"},
        ],
        ids=[
            "no-name",
            "no-language",
            "no-category",
            "bad-language",
            "bad-category",
            "wrong-case",
            "empty-name",
        ],
    )
    async def test_invalid_bodies_are_400(
        self, api: httpx.AsyncClient, fake: FakeQualtrics, body: dict[str, str]
    ) -> None:
        error_of(await api.post("/survey-definitions", json=body), 400, "MSTC_1")
        assert not fake.surveys

    async def test_a_body_that_is_not_json_is_400(self, api: httpx.AsyncClient) -> None:
        response = await api.post("/survey-definitions", content=b"{not json")

        error_of(response, 400)


class TestQuestions:
    async def test_qids_are_assigned_in_order_with_export_tags(
        self, api: httpx.AsyncClient, survey: SurveyRef, fake: FakeQualtrics
    ) -> None:
        ids = [
            await add_question(api, survey, mc_question()),
            await add_question(api, survey, te_question(DataExportTag="agent")),
            await add_question(api, survey, mc_question("MAVR")),
        ]

        listed = result_of(await api.get(definitions(survey, "/questions")))["elements"]
        assert ids == ["QID1", "QID2", "QID3"]
        assert [question["QuestionID"] for question in listed] == ids
        assert [question["DataExportTag"] for question in listed] == ["Q1", "agent", "Q3"]
        assert [q["QuestionID"] for q in fake.questions(survey.id)] == ids
        default_block = fake.surveys[survey.id].blocks[survey.default_block_id]
        assert [element["QuestionID"] for element in default_block["BlockElements"]] == ids

    async def test_get_returns_the_stored_definition(
        self, api: httpx.AsyncClient, survey: SurveyRef
    ) -> None:
        question_id = await add_question(api, survey, mc_question())

        stored = result_of(await api.get(definitions(survey, f"/questions/{question_id}")))

        assert stored == {**mc_question(), "QuestionID": "QID1", "DataExportTag": "Q1"}

    async def test_block_id_puts_the_question_in_that_block(
        self, api: httpx.AsyncClient, survey: SurveyRef
    ) -> None:
        created = await api.post(
            definitions(survey, "/blocks"), json={"Type": "Standard", "Description": "Creovai"}
        )
        block = result_of(created)
        response = await api.post(
            definitions(survey, "/questions"),
            params={"blockId": block["BlockID"]},
            json=te_question(),
        )

        result_of(response)
        stored = result_of(await api.get(definitions(survey, f"/blocks/{block['BlockID']}")))
        flow = result_of(await api.get(definitions(survey, "/flow")))
        assert stored["BlockElements"] == [{"Type": "Question", "QuestionID": "QID1"}]
        assert block["FlowID"] == "FL_3"
        assert flow["Flow"][-1] == {"Type": "Standard", "ID": block["BlockID"], "FlowID": "FL_3"}

    @pytest.mark.parametrize(("block_id", "status"), [("BL_000000000000000", 404), ("nope", 400)])
    async def test_an_unknown_or_malformed_block_id_is_refused(
        self, api: httpx.AsyncClient, survey: SurveyRef, block_id: str, status: int
    ) -> None:
        response = await api.post(
            definitions(survey, "/questions"), params={"blockId": block_id}, json=te_question()
        )

        error_of(response, status)

    @pytest.mark.parametrize(
        "body",
        [
            mc_question(QuestionType="Multiple"),
            mc_question("SL"),
            te_question(Selector="SAVR"),
            {**mc_question(), "SubSelector": None},
            mc_question(SubSelector="SingleAnswer"),
            te_question(SubSelector="TX"),
            mc_question(Selector="FOO"),
            mc_question(Choices={}),
            mc_question(Choices={"a": {"Display": "x"}}),
            mc_question(ChoiceOrder=["1", "3"]),
            mc_question(RecodeValues={"9": "1"}),
            {key: value for key, value in te_question().items() if key != "QuestionText"},
            te_question(QuestionText="x" * 1001),
            te_question(QuestionDescription="x" * 101),
            {"QuestionText": "Slider", "QuestionType": "Slider", "Selector": "SAVR"},
        ],
        ids=[
            "unknown-type",
            "mc-with-te-selector",
            "te-with-mc-selector",
            "mc-without-subselector",
            "mc-with-matrix-subselector",
            "te-with-subselector",
            "unknown-selector",
            "mc-without-choices",
            "non-numeric-choice-id",
            "choice-order-names-unknown-choice",
            "recode-of-unknown-choice",
            "no-question-text",
            "question-text-too-long",
            "te-description-too-long",
            "slider-with-mc-selector",
        ],
    )
    async def test_invalid_definitions_are_400(
        self, api: httpx.AsyncClient, survey: SurveyRef, body: dict[str, Any]
    ) -> None:
        error_of(await api.post(definitions(survey, "/questions"), json=body), 400)

    async def test_lenient_mode_checks_only_the_global_enums(
        self, api: httpx.AsyncClient, survey: SurveyRef, fake: FakeQualtrics
    ) -> None:
        fake.config.strict_question_types = False

        accepted = await api.post(definitions(survey, "/questions"), json=mc_question("SL"))
        refused = await api.post(definitions(survey, "/questions"), json=mc_question("FOO"))

        result_of(accepted)
        error_of(refused, 400)

    async def test_put_replaces_and_delete_removes_without_reusing_qids(
        self, api: httpx.AsyncClient, survey: SurveyRef, fake: FakeQualtrics
    ) -> None:
        first = await add_question(api, survey, te_question())
        replacement = te_question(QuestionText="Agent full name")
        assert_meta_only(
            await api.put(definitions(survey, f"/questions/{first}"), json=replacement)
        )
        stored = result_of(await api.get(definitions(survey, f"/questions/{first}")))
        assert stored["QuestionText"] == "Agent full name"
        assert stored["DataExportTag"] == "Q1"

        assert_meta_only(await api.delete(definitions(survey, f"/questions/{first}")))

        error_of(await api.get(definitions(survey, f"/questions/{first}")), 404)
        assert await add_question(api, survey, te_question()) == "QID2"
        block = fake.surveys[survey.id].blocks[survey.default_block_id]
        assert block["BlockElements"] == [{"Type": "Question", "QuestionID": "QID2"}]

    async def test_put_validates_like_post(self, api: httpx.AsyncClient, survey: SurveyRef) -> None:
        question_id = await add_question(api, survey, te_question())

        response = await api.put(
            definitions(survey, f"/questions/{question_id}"), json=te_question(Selector="SAVR")
        )

        error_of(response, 400)

    @pytest.mark.parametrize(("question_id", "status"), [("QID99", 404), ("Q-1", 400)])
    async def test_unknown_or_malformed_question_ids(
        self, api: httpx.AsyncClient, survey: SurveyRef, question_id: str, status: int
    ) -> None:
        error_of(await api.get(definitions(survey, f"/questions/{question_id}")), status)


class TestFlow:
    async def test_put_replaces_the_flow_and_get_returns_it_unchanged(
        self, api: httpx.AsyncClient, survey: SurveyRef, fake: FakeQualtrics
    ) -> None:
        flow = flow_with_embedded(
            survey.default_block_id,
            embedded_item("creovai_interaction_id"),
            embedded_item("tags", "MultiValueNominal"),
            embedded_item("score", "Scale", Value="0", AnalyzeText=False),
            embedded_item("legacy", "Filter Only"),
        )
        flow["Flow"][1]["Extra"] = {"kept": True}

        assert_meta_only(await api.put(definitions(survey, "/flow"), json=flow))

        assert result_of(await api.get(definitions(survey, "/flow"))) == flow
        assert result_of(await api.get(definitions(survey)))["SurveyFlow"] == flow
        fields = [item["Field"] for item in fake.embedded_fields(survey.id)]
        assert fields == ["creovai_interaction_id", "tags", "score", "legacy"]

    async def test_nested_embedded_data_is_found(
        self, api: httpx.AsyncClient, survey: SurveyRef, fake: FakeQualtrics
    ) -> None:
        nested = {
            "Type": "Group",
            "FlowID": "FL_4",
            "Flow": [
                {"Type": "EmbeddedData", "FlowID": "FL_5", "EmbeddedData": [embedded_item("t")]}
            ],
        }
        flow = flow_with_embedded(survey.default_block_id)
        flow["Flow"].append(nested)

        assert_meta_only(await api.put(definitions(survey, "/flow"), json=flow))

        assert [item["Field"] for item in fake.embedded_fields(survey.id)] == ["t"]

    @pytest.mark.parametrize(
        ("change", "message"),
        [
            (lambda f: f.pop("FlowID"), "FlowID"),
            (lambda f: f.pop("Type"), "Type"),
            (lambda f: f.pop("Flow"), "Flow"),
            (lambda f: f.pop("Properties"), "Properties"),
            (lambda f: f.update(Type="Bogus"), "Bogus"),
            (lambda f: f["Flow"][0].update(FlowID="FL_2"), "Duplicate FlowID FL_2"),
            (lambda f: f["Flow"][0].update(FlowID="FL_0"), "FL_0"),
            (lambda f: f["Flow"][0].pop("FlowID"), "FlowID"),
            (lambda f: f["Flow"][1].update(ID="BL_000000000000000"), "does not exist"),
            (lambda f: f["Flow"][1].update(ID="block"), "Invalid block ID"),
            (lambda f: f["Flow"][0].update(EmbeddedData={}), "must be an array"),
            (lambda f: f["Flow"][0].update(Flow={}), "must be an array"),
            (lambda f: f["Flow"].append("x"), "must be an object"),
            (lambda f: _item(f).update(VariableType="Bogus"), "VariableType"),
            (lambda f: _item(f).update(Type="Text"), "embedded data Type"),
            (lambda f: _item(f).pop("Field"), "Field is required"),
            (lambda f: _item(f).pop("Description"), "Description is required"),
            (lambda f: _item(f).pop("Type"), "Type is required"),
            (lambda f: _item(f).update(Field=""), "must not be empty"),
            (lambda f: _item(f).update(Field="f" * 101), "longer than 100"),
            (lambda f: _item(f).update(Description="d" * 101), "longer than 100"),
            (lambda f: _item(f).update(Value="v" * 101), "longer than 100"),
            (lambda f: _item(f).update(Value=3), "must be a string"),
        ],
    )
    async def test_invalid_flows_are_400_and_change_nothing(
        self,
        api: httpx.AsyncClient,
        survey: SurveyRef,
        change: Any,
        message: str,
    ) -> None:
        before = result_of(await api.get(definitions(survey, "/flow")))
        flow = flow_with_embedded(survey.default_block_id, embedded_item("cohort"))
        change(flow)

        error = error_of(await api.put(definitions(survey, "/flow"), json=flow), 400)

        assert message in error["errorMessage"]
        assert result_of(await api.get(definitions(survey, "/flow"))) == before


def _item(flow: dict[str, Any]) -> dict[str, Any]:
    item: dict[str, Any] = flow["Flow"][0]["EmbeddedData"][0]
    return item


class TestActivation:
    async def test_put_surveys_is_active_shows_in_metadata_and_the_list(
        self, api: httpx.AsyncClient, survey: SurveyRef
    ) -> None:
        assert_meta_only(await api.put(f"/surveys/{survey.id}", json={"isActive": True}))

        metadata = result_of(await api.get(definitions(survey, "/metadata")))
        listed = result_of(await api.get("/surveys"))["elements"]
        assert metadata["SurveyStatus"] == "Active"
        assert metadata["LastActivated"] is not None
        assert listed[0]["isActive"] is True
        assert result_of(await api.get(f"/surveys/{survey.id}"))["isActive"] is True

    async def test_metadata_survey_status_shows_in_the_legacy_view(
        self, api: httpx.AsyncClient, survey: SurveyRef
    ) -> None:
        await api.put(f"/surveys/{survey.id}", json={"isActive": True})

        assert_meta_only(
            await api.put(definitions(survey, "/metadata"), json={"SurveyStatus": "Inactive"})
        )

        assert result_of(await api.get(f"/surveys/{survey.id}"))["isActive"] is False
        assert result_of(await api.get(definitions(survey)))["SurveyStatus"] == "Inactive"

    async def test_metadata_updates_name_and_mysql_dates(
        self, api: httpx.AsyncClient, survey: SurveyRef
    ) -> None:
        update = {"SurveyName": "Renamed", "SurveyExpirationDate": "2030-01-31 23:59:00"}

        assert_meta_only(await api.put(definitions(survey, "/metadata"), json=update))

        metadata = result_of(await api.get(definitions(survey, "/metadata")))
        assert metadata["SurveyName"] == "Renamed"
        assert metadata["SurveyExpirationDate"] == "2030-01-31 23:59:00"

    @pytest.mark.parametrize(
        ("path", "body"),
        [
            ("/surveys/{id}", {}),
            ("/surveys/{id}", {"IsActive": True}),
            ("/surveys/{id}", {"isActive": "true"}),
            ("/surveys/{id}", {"expiration": {"start": "x"}}),
            ("/survey-definitions/{id}/metadata", {}),
            ("/survey-definitions/{id}/metadata", {"SurveyStatus": "Pending"}),
            ("/survey-definitions/{id}/metadata", {"surveyStatus": "Active"}),
            ("/survey-definitions/{id}/metadata", {"SurveyStartDate": "2030-01-31T00:00:00Z"}),
        ],
    )
    async def test_invalid_updates_are_400(
        self, api: httpx.AsyncClient, survey: SurveyRef, path: str, body: dict[str, Any]
    ) -> None:
        error_of(await api.put(path.format(id=survey.id), json=body), 400)

        assert result_of(await api.get(definitions(survey, "/metadata")))["SurveyStatus"] == (
            "Inactive"
        )


class TestVersions:
    @pytest.mark.parametrize(
        "body",
        [
            {"Published": True},
            {"Description": "v1"},
            {"Description": "v1", "Published": "yes"},
            {"Description": 1, "Published": True},
        ],
    )
    async def test_description_and_published_are_required(
        self, api: httpx.AsyncClient, survey: SurveyRef, body: dict[str, Any]
    ) -> None:
        error_of(await api.post(definitions(survey, "/versions"), json=body), 400)

    async def test_versions_count_up_and_snapshot_the_definition(
        self, api: httpx.AsyncClient, survey: SurveyRef
    ) -> None:
        body = {"Description": "v1", "Published": True}
        first = result_of(await api.post(definitions(survey, "/versions"), json=body))
        await add_question(api, survey, te_question())
        second = result_of(
            await api.post(definitions(survey, "/versions"), json={**body, "Description": "v2"})
        )

        first_meta, second_meta = first["metadata"], second["metadata"]
        assert (first_meta["versionNumber"], second_meta["versionNumber"]) == (1, 2)
        assert re.fullmatch(r"[0-9]+", first_meta["versionID"])
        assert first_meta["versionID"] != second_meta["versionID"]
        assert first_meta["published"] is True
        assert first_meta["surveyID"] == survey.id
        listed = result_of(await api.get(definitions(survey, "/versions")))["elements"]
        assert [version["versionNumber"] for version in listed] == [2, 1]
        snapshot = result_of(
            await api.get(definitions(survey, f"/versions/{first_meta['versionID']}"))
        )
        assert snapshot["Questions"] == {}

    @pytest.mark.parametrize(("version_id", "status"), [("123", 404), ("v1", 400)])
    async def test_unknown_or_malformed_version_ids(
        self, api: httpx.AsyncClient, survey: SurveyRef, version_id: str, status: int
    ) -> None:
        error_of(await api.get(definitions(survey, f"/versions/{version_id}")), status)


SURVEY_CALLS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/survey-definitions/{id}", None),
    ("GET", "/survey-definitions/{id}/metadata", None),
    ("PUT", "/survey-definitions/{id}/metadata", {"SurveyStatus": "Active"}),
    ("GET", "/survey-definitions/{id}/questions", None),
    ("POST", "/survey-definitions/{id}/questions", te_question()),
    ("GET", "/survey-definitions/{id}/questions/QID1", None),
    ("GET", "/survey-definitions/{id}/flow", None),
    ("PUT", "/survey-definitions/{id}/flow", {"FlowID": "FL_1"}),
    ("POST", "/survey-definitions/{id}/blocks", {"Type": "Standard", "Description": "b"}),
    ("GET", "/survey-definitions/{id}/versions", None),
    ("POST", "/survey-definitions/{id}/versions", {"Description": "v", "Published": True}),
    ("GET", "/surveys/{id}", None),
    ("PUT", "/surveys/{id}", {"isActive": True}),
    ("POST", "/surveys/{id}/responses", {"values": {}}),
    ("GET", "/surveys/{id}/responses/R_000000000000000", None),
    ("DELETE", "/surveys/{id}", None),
    ("DELETE", "/survey-definitions/{id}", None),
]


class TestDeleteSurvey:
    @pytest.mark.parametrize("delete_path", ["/survey-definitions/{id}", "/surveys/{id}"])
    async def test_after_delete_every_call_for_the_survey_is_404(
        self,
        api: httpx.AsyncClient,
        survey: SurveyRef,
        fake: FakeQualtrics,
        delete_path: str,
    ) -> None:
        await add_question(api, survey, te_question())
        await api.post(f"/surveys/{survey.id}/responses", json={"values": {}})

        deleted = result_of(await api.delete(delete_path.format(id=survey.id)))

        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", deleted["DeletedDate"])
        assert survey.id not in fake.surveys
        for method, path, body in SURVEY_CALLS:
            response = await api.request(method, path.format(id=survey.id), json=body)
            error_of(response, 404, "QMST_2.2")
        assert result_of(await api.get("/surveys"))["elements"] == []

    async def test_an_out_of_band_delete_looks_the_same(
        self, api: httpx.AsyncClient, survey: SurveyRef, fake: FakeQualtrics
    ) -> None:
        fake.delete_survey(survey.id)

        error_of(await api.get(definitions(survey)), 404)


class TestSurveyIds:
    @pytest.mark.parametrize(("method", "path", "body"), SURVEY_CALLS)
    async def test_a_malformed_survey_id_is_400(
        self, api: httpx.AsyncClient, method: str, path: str, body: Any
    ) -> None:
        response = await api.request(method, path.format(id="SV_short"), json=body)

        assert "Invalid survey ID" in error_of(response, 400, "MSTC_1")["errorMessage"]

    @pytest.mark.parametrize(("method", "path", "body"), SURVEY_CALLS)
    async def test_a_well_formed_unknown_survey_id_is_404(
        self, api: httpx.AsyncClient, method: str, path: str, body: Any
    ) -> None:
        response = await api.request(method, path.format(id=WELL_FORMED_UNKNOWN_SURVEY), json=body)

        error_of(response, 404)

    async def test_another_brands_survey_is_404(
        self, api: httpx.AsyncClient, http: httpx.AsyncClient, fake: FakeQualtrics
    ) -> None:
        fake.register_account("other", "pw", datacenter="acme", brand_id="otherbrand")
        token = await http.post(
            "/acme/oauth2/token", auth=("other", "pw"), data={"grant_type": "client_credentials"}
        )
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
        created = await http.post(
            "/acme/API/v3/survey-definitions",
            headers=headers,
            json={"SurveyName": "theirs", "Language": "DE", "ProjectCategory": "CX"},
        )

        survey_id = result_of(created)["SurveyID"]

        error_of(await api.get(f"/survey-definitions/{survey_id}"), 404)
        assert result_of(await api.get("/surveys"))["elements"] == []


class TestListSurveys:
    async def test_pages_follow_next_page_until_null(
        self, api: httpx.AsyncClient, make_survey: SurveyFactory, fake: FakeQualtrics
    ) -> None:
        fake.config.list_page_size = 2
        created = [(await make_survey(f"survey {n}")).id for n in range(5)]

        seen: list[str] = []
        pages = 0
        url: str | None = "/surveys"
        while url is not None:
            result = result_of(await api.get(url))
            seen += [element["id"] for element in result["elements"]]
            url = result["nextPage"]
            pages += 1

        assert seen == created
        assert pages == 3
        first = result_of(await api.get("/surveys"))
        assert first["nextPage"] == "http://testserver/acme/API/v3/surveys?offset=2"
        assert set(first["elements"][0]) == {
            "id",
            "name",
            "ownerId",
            "lastModified",
            "creationDate",
            "isActive",
        }

    async def test_a_bad_offset_is_400(self, api: httpx.AsyncClient) -> None:
        error_of(await api.get("/surveys", params={"offset": "-1"}), 400)
