"""Step 3: the selection is validated, the survey synced, and previews are exact."""

import httpx
import pytest

from service.interactions.schemas import INTERACTION_EXAMPLE
from service.testing.fake_qualtrics import FakeQualtrics
from tests.conftest import Account
from tests.helpers import assert_problem
from tests.setup.helpers import (
    SELECTION,
    connect,
    create_integration,
    create_project,
    put_catalog,
    save_fields,
)


async def configured(client: httpx.AsyncClient, admin: Account) -> tuple[str, str]:
    await put_catalog(client, admin)
    integration_id = await create_integration(client, admin)
    await connect(client, admin, integration_id)
    project = await create_project(client, admin, integration_id)
    return integration_id, str(project["survey_id"])


class TestSaveDataFields:
    async def test_survey_gets_exactly_the_questions_and_fields_asked_for(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id, survey_id = await configured(client, admin)
        response = await save_fields(client, admin, integration_id)
        assert response.status_code == 200, response.text
        assert [field["key"] for field in response.json()["fields"]] == [
            field["key"] for field in SELECTION
        ]

        questions = qualtrics.questions(survey_id)
        shapes = [(q["QuestionType"], q["Selector"]) for q in questions]
        # In selection order: agent text, Frustration yes/no, Effort group, TEI band, AIS range.
        assert shapes == [
            ("TE", "SL"),
            ("MC", "SAVR"),
            ("MC", "MAVR"),
            ("MC", "SAVR"),
            ("TE", "SL"),
        ]
        frustration, effort, band = questions[1], questions[2], questions[3]
        assert [frustration["Choices"][c]["Display"] for c in frustration["ChoiceOrder"]] == [
            "Yes",
            "No",
        ]
        assert [effort["Choices"][c]["Display"] for c in effort["ChoiceOrder"]] == [
            "Frustration",
            "Repeat contact",
            "Transfer",
        ]
        assert [band["Choices"][c]["Display"] for c in band["ChoiceOrder"]] == [
            "Low",
            "Average",
            "High",
        ]
        assert questions[4]["Validation"]["Settings"]["ContentType"] == "ValidNumber"

        declared = {f["Field"]: f["VariableType"] for f in qualtrics.embedded_fields(survey_id)}
        assert list(declared.values()).count("MultiValueNominal") == 1
        assert declared["creovai_interaction_id"] == "String"
        assert declared["creovai_trigger"] == "Nominal"
        # 7 embedded selections + the 2 reserved fields.
        assert len(declared) == 9
        assert "Date" in declared.values()
        assert "Scale" in declared.values()

        project = (
            await client.get(f"/v1/integrations/{integration_id}/project", headers=admin.headers)
        ).json()
        assert project["published_version_number"] == 2

    async def test_saving_again_changes_nothing_and_removing_deletes_nothing(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id, survey_id = await configured(client, admin)
        await save_fields(client, admin, integration_id)
        before = qualtrics.questions(survey_id)
        version = qualtrics.surveys[survey_id].versions[-1]

        assert (await save_fields(client, admin, integration_id)).status_code == 200
        assert qualtrics.questions(survey_id) == before
        assert qualtrics.surveys[survey_id].versions[-1] == version

        assert (await save_fields(client, admin, integration_id, SELECTION[:2])).status_code == 200
        assert len(qualtrics.questions(survey_id)) == len(before)
        assert len(qualtrics.embedded_fields(survey_id)) == 9

    async def test_every_bad_field_is_named_with_its_allowed_formats(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id, survey_id = await configured(client, admin)
        fields = [
            {"source": "score", "key": "TEI", "placement": "question", "format": "boolean"},
            {"source": "category", "key": "Nope", "placement": "question", "format": "boolean"},
            {
                "source": "category_group",
                "key": "Effort",
                "placement": "question",
                "format": "multi_value_text_set",
            },
        ]
        response = await save_fields(client, admin, integration_id, fields)
        body = assert_problem(response, 422)
        errors = body["errors"]
        assert [error["pointer"].split("/")[3] for error in errors] == ["0", "1", "2"]  # type: ignore[index, union-attr]
        assert "value, range" in errors[0]["detail"]  # type: ignore[index]
        assert "Nope" in errors[1]["detail"]  # type: ignore[index]
        assert qualtrics.questions(survey_id) == []

    async def test_needs_a_project(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        await put_catalog(client, admin)
        integration_id = await create_integration(client, admin)
        await connect(client, admin, integration_id)
        assert_problem(await save_fields(client, admin, integration_id), 409)

    @pytest.mark.parametrize("body", [{}, {"fields": []}, {"fields": [{"source": "x"}]}])
    async def test_malformed_selection(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics, body: object
    ) -> None:
        integration_id, _ = await configured(client, admin)
        response = await client.put(
            f"/v1/integrations/{integration_id}/data-fields", json=body, headers=admin.headers
        )
        assert_problem(response, 422)

    async def test_viewer_cannot_save(
        self, client: httpx.AsyncClient, admin: Account, viewer: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id, _ = await configured(client, admin)
        assert_problem(await save_fields(client, viewer, integration_id), 403)


class TestPreview:
    async def test_preview_of_the_saved_selection_is_the_exact_request(
        self, client: httpx.AsyncClient, admin: Account, viewer: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id, survey_id = await configured(client, admin)
        await save_fields(client, admin, integration_id)
        response = await client.post(
            f"/v1/integrations/{integration_id}/preview",
            json={"interaction": INTERACTION_EXAMPLE, "trigger_name": "Frustrated callers"},
            headers=viewer.headers,
        )
        assert response.status_code == 200, response.text
        preview = response.json()
        assert [field["position"] for field in preview["fields"]] == list(range(len(SELECTION)))
        assert preview["provisional"] == []
        request = preview["request"]
        assert (
            request["url"]
            == f"http://fake-qualtrics.test/iad1/API/v3/surveys/{survey_id}/responses"
        )
        values = request["body"]["values"]
        assert values["creovai_interaction_id"] == "call-000123"
        assert values["creovai_trigger"] == "Frustrated callers"
        assert values["startDate"] == "2026-11-26T08:15:00Z"
        assert values["finished"] == 1
        assert values["userLanguage"] == "EN"
        # The customer has no email in the example: that field is left out, with a reason.
        email = preview["fields"][2]
        assert email["value"] is None
        assert email["reason"]
        assert None not in values.values()
        assert "" not in values.values()

    async def test_preview_before_saving_marks_new_questions_provisional(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id, survey_id = await configured(client, admin)
        response = await client.post(
            f"/v1/integrations/{integration_id}/preview",
            json={"interaction": INTERACTION_EXAMPLE, "fields": SELECTION[:4]},
            headers=admin.headers,
        )
        assert response.status_code == 200, response.text
        preview = response.json()
        assert len(preview["provisional"]) == 2
        assert qualtrics.questions(survey_id) == []

    async def test_invalid_interaction_is_422(
        self, client: httpx.AsyncClient, admin: Account, qualtrics: FakeQualtrics
    ) -> None:
        integration_id, _ = await configured(client, admin)
        response = await client.post(
            f"/v1/integrations/{integration_id}/preview",
            json={"interaction": {"id": "x", "channel": "fax", "started_at": "yesterday"}},
            headers=admin.headers,
        )
        body = assert_problem(response, 422)
        pointers = {error["pointer"] for error in body["errors"]}  # type: ignore[union-attr]
        assert pointers == {"/body/interaction/channel", "/body/interaction/started_at"}
