"""Steps 1-5 through the public API, against the fake Qualtrics over real HTTP."""

import httpx

from tests.conftest import Account
from tests.setup.helpers import SELECTION, add_trigger, put_catalog


async def test_an_admin_configures_an_integration_end_to_end(
    client: httpx.AsyncClient, admin: Account, fake_control: httpx.AsyncClient
) -> None:
    headers = admin.headers
    await put_catalog(client, admin)
    created = await client.post(
        "/v1/integrations", json={"name": "Voice of the customer"}, headers=headers
    )
    integration_id = created.json()["id"]
    base = f"/v1/integrations/{integration_id}"
    etag = created.headers["ETag"]

    # Step 1: credentials, verified over HTTP; every write carries the ETag it last read.
    step1 = await client.put(
        f"{base}/qualtrics-connection",
        json={
            "client_id": "connector-test-client",
            "client_secret": "canary-qualtrics-secret-5f3a9c1e7b",
            "subdomain": "iad1",
        },
        headers={**headers, "If-Match": etag},
    )
    assert step1.status_code == 200, step1.text
    etag = step1.headers["ETag"]

    # Step 2: the project.
    step2 = await client.post(
        f"{base}/project", json={"name": "Creovai insights"}, headers={**headers, "If-Match": etag}
    )
    assert step2.status_code == 201, step2.text
    survey_id = step2.json()["survey_id"]
    etag = step2.headers["ETag"]

    # Step 3: the data fields.
    step3 = await client.put(
        f"{base}/data-fields", json={"fields": SELECTION}, headers={**headers, "If-Match": etag}
    )
    assert step3.status_code == 200, step3.text
    etag = step3.headers["ETag"]

    # Step 4: a trigger.
    await add_trigger(client, admin, integration_id, {"channels": ["call"]})
    etag = (await client.get(base, headers=headers)).headers["ETag"]

    # Step 5: enable.
    readiness = (await client.get(f"{base}/readiness", headers=headers)).json()
    assert readiness["ready"] is True
    enabled = await client.post(f"{base}/enable", headers={**headers, "If-Match": etag})
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["enabled"] is True

    # The survey in Qualtrics has exactly what the selection asks for, in order, typed.
    survey = (await fake_control.get(f"/_fake/surveys/{survey_id}")).json()
    assert survey["isActive"] is True
    questions = [(q["QuestionType"], q["Selector"]) for q in survey["questions"]]
    wanted_questions = [f for f in SELECTION if f["placement"] == "question"]
    assert len(questions) == len(wanted_questions)
    expected = {
        "text": ("TE", "SL"),
        "boolean": ("MC", "SAVR"),
        "group": ("MC", "MAVR"),
        "value": ("MC", "SAVR"),
        "range": ("TE", "SL"),
    }
    assert questions == [expected[f["format"]] for f in wanted_questions]

    declared = [(f["Field"], f["VariableType"]) for f in survey["embeddedFields"]]
    wanted_embedded = [f for f in SELECTION if f["placement"] == "embedded_data"]
    assert len(declared) == len(wanted_embedded) + 2
    types = {
        "text": {"String", "Nominal", "Date"},
        "numeric": {"Scale"},
        "multi_value_text_set": {"MultiValueNominal"},
        "range": {"Scale"},
    }
    selection_fields = [f for f in declared if not f[0].startswith("creovai_")]
    for (name, variable_type), field in zip(selection_fields, wanted_embedded, strict=True):
        assert variable_type in types[field["format"]], (name, field)
    assert ("creovai_interaction_id", "String") in declared
    assert ("creovai_trigger", "Nominal") in declared
    assert [v["versionNumber"] for v in survey["versions"]] == [1, 2]
