"""Exact encodings (design §4), each against a hand-computed expectation."""

import json
from typing import Any

import pytest

from service.catalog.schemas import CatalogDocument
from service.data_fields.encoding import compile_plan, encode_response
from service.data_fields.languages import qualtrics_language
from service.data_fields.schemas import DataField, FieldTarget, Placement
from service.data_fields.targets import target_key
from service.data_fields.values import range_encoder, utc_text
from tests.data_fields.factories import (
    APP_URL,
    CATALOG,
    CATALOG_DOCUMENT,
    TRIGGER,
    encode,
    field,
    interaction,
    synced_field_map,
    value_of,
)

START = "2026-11-26T23:30:15+01:00"


def detail(key: str, placement: str = "embedded_data") -> DataField:
    return field("interaction_detail", key, placement)


def tei(value: float) -> list[dict[str, Any]]:
    return [{"name": "TEI", "value": value}]


class TestResponseMetadata:
    def test_always_carried(self) -> None:
        values = encode([], interaction()).values
        assert values == {
            "startDate": "2026-11-26T08:15:00Z",
            "endDate": "2026-11-26T08:21:30Z",
            "finished": 1,
            "userLanguage": "EN",
            "creovai_interaction_id": "call-000123",
            "creovai_trigger": TRIGGER,
        }

    def test_end_date_is_the_start_without_an_end(self) -> None:
        values = encode([], interaction(ended_at=None)).values
        assert values["endDate"] == values["startDate"] == "2026-11-26T08:15:00Z"

    def test_no_user_language_without_a_qualtrics_code(self) -> None:
        assert "userLanguage" not in encode([], interaction(language="xho")).values
        assert "userLanguage" not in encode([], interaction(language=None)).values

    def test_no_trigger_name_no_trigger_field(self) -> None:
        assert "creovai_trigger" not in encode([], trigger_name="").values

    @pytest.mark.parametrize(
        ("iso_639_3", "code"),
        [
            ("eng", "EN"),
            ("deu", "DE"),
            ("fra", "FR"),
            ("spa", "ES"),
            ("ita", "IT"),
            ("por", "PT"),
            ("nld", "NL"),
            ("jpn", "JA"),
            ("zho", "ZH-S"),
            ("kor", "KO"),
            ("pol", "PL"),
            ("swe", "SV"),
            ("dan", "DA"),
            ("fin", "FI"),
            ("nor", "NO"),
            ("rus", "RU"),
            ("tur", "TR"),
            ("ara", "AR"),
            ("heb", "HE"),
            ("hin", "HI"),
        ],
    )
    def test_languages(self, iso_639_3: str, code: str) -> None:
        assert qualtrics_language(iso_639_3) == code
        assert encode([], interaction(language=iso_639_3)).values["userLanguage"] == code


class TestDatesAndTimes:
    def test_date_and_time_in_the_start_offset(self) -> None:
        subject = interaction(started_at=START, ended_at="2026-11-27T00:10:00+01:00")
        assert value_of(detail("date"), subject) == "2026-11-26"
        assert value_of(detail("time"), subject) == "23:30:15"
        assert value_of(detail("started_at"), subject) == "2026-11-26T22:30:15Z"
        assert value_of(detail("ended_at"), subject) == "2026-11-26T23:10:00Z"

    def test_a_negative_offset_moves_the_utc_day(self) -> None:
        subject = interaction(started_at="2026-11-26T22:30:00-05:00", ended_at=None)
        assert value_of(detail("date"), subject) == "2026-11-26"
        assert value_of(detail("time"), subject) == "22:30:00"
        assert value_of(detail("started_at"), subject) == "2026-11-27T03:30:00Z"

    def test_fractions_of_a_second_are_dropped(self) -> None:
        subject = interaction(started_at="2026-11-26T08:15:59.999+00:00", ended_at=None)
        assert value_of(detail("started_at"), subject) == "2026-11-26T08:15:59Z"
        assert value_of(detail("time"), subject) == "08:15:59"

    def test_no_end_no_ended_at(self) -> None:
        response = encode([detail("ended_at")], interaction(ended_at=None))
        assert response.fields[0].value is None
        assert response.fields[0].reason == "the interaction has no end time"

    def test_old_years_keep_four_digits(self) -> None:
        from datetime import UTC, datetime

        assert utc_text(datetime(987, 6, 5, 4, 3, 2, tzinfo=UTC)) == "0987-06-05T04:03:02Z"

    def test_any_kind_of_zone(self) -> None:
        from datetime import datetime, timedelta, timezone
        from zoneinfo import ZoneInfo

        parsed = interaction(started_at="2026-03-29T01:30:00-05:00").started_at  # pydantic's
        fixed = datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-5)))
        named = datetime(2026, 3, 29, 1, 30, tzinfo=ZoneInfo("America/Chicago"))  # CDT, -5
        for moment in (parsed, fixed, named):
            assert utc_text(moment) == "2026-03-29T06:30:00Z", moment.tzinfo


class TestNumbers:
    @pytest.mark.parametrize(
        ("seconds", "whole"), [(390, 390), (390.5, 391), (390.49, 390), (0.5, 1), (0, 0)]
    )
    def test_durations_are_whole_seconds_half_up(self, seconds: float, whole: int) -> None:
        subject = interaction(duration_seconds=seconds, talk_time_seconds=seconds)
        assert value_of(detail("duration"), subject) == whole
        assert value_of(detail("talk_time"), subject) == whole
        assert value_of(detail("duration", "question"), subject) == whole

    @pytest.mark.parametrize(
        ("score", "value", "expected"),
        [
            ("TEI", 4.55, "4.6"),  # half up, on the number as written (the float is 4.5499...)
            ("TEI", 4.549, "4.5"),
            ("TEI", 1.45, "1.5"),
            ("TEI", 0, "0.0"),
            ("TEI", 10, "10.0"),
            ("TEI", 9.96, "10.0"),
            ("TEI", 12.5, "10.0"),  # clamped
            ("TEI", -0.5, "0.0"),
            ("AIS", 7.2, "5.4"),  # (7.2 + 100) / 200 * 10 = 5.36
            ("AIS", -100, "0.0"),
            ("AIS", -99, "0.1"),  # 0.05 exactly: half up
            ("CSAT", 2, "2.5"),  # (2 - 1) / 4 * 10
            ("CSAT", 1.02, "0.1"),  # 0.05 exactly
        ],
    )
    def test_range(self, score: str, value: float, expected: str) -> None:
        subject = interaction(scores=[{"name": score, "value": value}])
        assert value_of(field("score", score, fmt="range"), subject) == expected
        assert value_of(field("score", score, "question", "range"), subject) == expected

    def test_near_ties_are_decided_on_exact_decimals(self) -> None:
        # 0.015 - 4.7e-30 is just below the tie 0.15; 28-digit arithmetic would round it onto it.
        assert range_encoder(4.707764854780023e-30, 1.0)(0.015) == "0.1"
        assert range_encoder(0.0, 1.0)(0.015) == "0.2"
        # A span so small that 100 / span overflows a float.
        tiny = range_encoder(0.0, 2.225073858507e-311)
        assert (tiny(0.0), tiny(1.0), tiny(1.1125369292536e-312)) == ("0.0", "10.0", "0.5")

    def test_numeric_is_one_or_zero(self) -> None:
        assert value_of(field("category", "Frustration", fmt="numeric")) == 1
        assert value_of(field("category", "Cancellation", fmt="numeric")) == 0
        assert value_of(field("category_group", "Effort", fmt="numeric")) == 1
        assert value_of(field("category_group", "Churn risk", "question", "numeric")) == 0


class TestBands:
    @pytest.mark.parametrize(
        ("value", "label"),
        [
            (0, "Low"),
            (3.2999, "Low"),
            (3.3, "Average"),  # a boundary belongs to the upper band
            (6.6, "High"),
            (10, "High"),  # the last band holds its max
            (-5, "Low"),  # outside the scale: the nearest band, as range clamps
            (12, "High"),
        ],
    )
    def test_value_is_the_band_label(self, value: float, label: str) -> None:
        subject = interaction(scores=tei(value))
        assert value_of(field("score", "TEI", fmt="value"), subject) == label

    def test_as_a_question_the_choice_id(self) -> None:
        response = encode([field("score", "TEI", "question", "value")], interaction(scores=tei(7)))
        assert response.values["QID1"] == 3
        assert response.fields[0].display == "High"

    def test_a_band_without_a_choice_is_left_out(self) -> None:
        value_question = field("score", "TEI", "question", "value")
        field_map = {
            target_key(value_question): {
                "kind": "question",
                "question_id": "QID2",
                "choices": {"Low": "1", "Average": "2"},  # synced before "High" existed
            }
        }
        response = encode([value_question], interaction(scores=tei(7)), field_map=field_map)
        assert "QID2" not in response.values
        assert response.fields[0].reason == (
            "High is not a choice of question QID2 yet: save the data fields again to update "
            "the survey"
        )
        assert (
            encode([value_question], interaction(scores=tei(1)), field_map=field_map).values["QID2"]
            == 1
        )


class TestCategories:
    def test_boolean(self) -> None:
        assert value_of(field("category", "Frustration", fmt="boolean")) == "Yes"
        assert value_of(field("category", "Cancellation", fmt="boolean")) == "No"
        response = encode(
            [
                field("category", "Frustration", "question", "boolean"),
                field("category", "Cancellation", "question", "boolean"),
            ]
        )
        assert (response.values["QID1"], response.values["QID2"]) == (1, 2)
        assert [one.display for one in response.fields] == ["Yes", "No"]

    def test_no_occurrences_is_no(self) -> None:
        subject = interaction(categories=[{"name": "Frustration", "occurrences": 0}])
        assert value_of(field("category", "Frustration", fmt="boolean"), subject) == "No"
        assert value_of(field("category_group", "Effort", fmt="boolean"), subject) == "No"

    def test_a_group_occurs_when_a_member_occurs(self) -> None:
        subject = interaction(categories=[{"name": "Repeat contact"}])
        assert value_of(field("category_group", "Effort", fmt="boolean"), subject) == "Yes"
        assert value_of(field("category_group", "Churn risk", fmt="boolean"), subject) == "No"

    def test_or_when_the_interaction_places_a_category_in_it(self) -> None:
        subject = interaction(categories=[{"name": "Transfer", "groups": ["Churn risk"]}])
        assert value_of(field("category_group", "Churn risk", fmt="boolean"), subject) == "Yes"
        assert value_of(field("category_group", "Churn risk", fmt="group"), subject) == "Transfer"

    def test_group_members_in_catalogue_order(self) -> None:
        subject = interaction(
            categories=[
                {"name": "Hold, long"},
                {"name": "Transfer", "groups": ["Effort"]},
                {"name": "Frustration", "groups": ["Effort"]},
                {"name": "Repeat contact", "occurrences": 0},
            ]
        )
        expected = "Frustration, Hold; long, Transfer"  # catalogue order, then payload order
        assert value_of(field("category_group", "Effort", fmt="group"), subject) == expected
        mvts = field("category_group", "Effort", fmt="multi_value_text_set")
        assert value_of(mvts, subject) == expected
        response = encode([field("category_group", "Effort", "question", "group")], subject)
        assert response.values["QID1"] == [1, 3]  # Transfer has no choice
        assert response.fields[0].display == "Frustration, Hold, long"

    def test_names_that_read_alike_once_commas_are_replaced_are_sent_once(self) -> None:
        # "Hold, long" (a member) and "Hold; long" (the payload's) both read "Hold; long".
        subject = interaction(
            categories=[{"name": "Hold, long"}, {"name": "Hold; long", "groups": ["Effort"]}]
        )
        mvts = field("category_group", "Effort", fmt="multi_value_text_set")
        assert value_of(mvts, subject) == "Hold; long"

    def test_nothing_of_a_group_occurred(self) -> None:
        fields = [
            field("category_group", "Churn risk", fmt="group"),
            field("category_group", "Churn risk", fmt="multi_value_text_set"),
            field("category_group", "Churn risk", "question", "group"),
        ]
        response = encode(fields)
        assert [one.value for one in response.fields] == [None, None, None]
        assert response.fields[0].reason == "no category of group 'Churn risk' occurred"
        assert set(response.values) == {
            "startDate",
            "endDate",
            "finished",
            "userLanguage",
            "creovai_interaction_id",
            "creovai_trigger",
        }


class TestText:
    def test_interaction_details(self) -> None:
        subject = interaction(
            url=None,
            call_groups=[
                {"name": "Billing", "type": "Team"},
                {"name": "Leeds, UK", "type": "Site"},
                {"name": "Billing", "type": "Team"},
                {"name": "Retention", "type": "Team"},
            ],
        )
        expected = {
            "agent": "Sam Agent",
            "agent_id": "agent-7",
            "direction": "inbound",
            "channel": "call",
            "call_groups": "Billing, Leeds; UK, Retention",
            "language": "eng",
            "country": "GBR",
            "number_dialed": "+441234567890",
            "interaction_id": "call-000123",
            "link": f"{APP_URL}/interactions/call-000123",
        }
        for key, value in expected.items():
            assert value_of(detail(key), subject) == value, key
            assert value_of(detail(key, "question"), subject) == value, key

    def test_customer_details(self) -> None:
        subject = interaction(
            customer={"id": "c-1", "name": " Alex ", "phone": "+4477", "email": "a@example.com"}
        )
        expected = {
            "name": "Alex",
            "phone": "+4477",
            "customer_id": "c-1",
            "email": "a@example.com",
        }
        for key, value in expected.items():
            assert value_of(field("customer_detail", key), subject) == value

    def test_call_group_types(self) -> None:
        subject = interaction(
            call_groups=[
                {"name": "Retention", "type": "Team"},
                {"name": "Leeds, UK", "type": "Site"},
                {"name": "Billing", "type": "Team"},
            ]
        )
        assert value_of(field("call_group_type", "Team"), subject) == "Retention, Billing"
        mvts = field("call_group_type", "Site", fmt="multi_value_text_set")
        assert value_of(mvts, subject) == "Leeds; UK"

    def test_link_prefers_the_payload_url(self) -> None:
        assert value_of(detail("link")) == "https://app.creovai.com/interactions/call-000123"
        subject = interaction(url="https://eu.creovai.com/i/42", id="42")
        assert value_of(detail("link"), subject) == "https://eu.creovai.com/i/42"

    def test_link_without_a_url(self) -> None:
        plan = compile_plan([detail("link")], synced_field_map([detail("link")]), CATALOG)
        subject = interaction(url=None, id="team a/call 7")
        values = plan.values(subject, trigger_name="t", creovai_app_url="https://x.test/")
        assert values["interaction_link"] == "https://x.test/interactions/team%20a%2Fcall%207"

    def test_metadata(self) -> None:
        subject = interaction(
            metadata={"region": " EMEA ", "priority": 3, "weight": 2.5, "vip": True}
        )
        assert value_of(field("custom_metadata", "region"), subject) == "EMEA"
        assert value_of(field("custom_metadata", "priority"), subject) == "3"
        assert value_of(field("custom_metadata", "weight"), subject) == "2.5"
        assert value_of(field("custom_metadata", "vip"), subject) == "true"
        assert value_of(field("custom_metadata", "region", "question"), subject) == "EMEA"


class TestAbsentValues:
    @pytest.mark.parametrize(
        ("one_field", "changes", "reason"),
        [
            (field("customer_detail", "email"), {}, "the interaction has no customer email"),
            (field("customer_detail", "name"), {"customer": None}, "no customer name"),
            (field("customer_detail", "phone"), {"customer": {"phone": "  "}}, "no customer"),
            (detail("agent"), {"agent": None}, "the interaction has no agent name"),
            (detail("agent_id"), {"agent": {"name": "Sam"}}, "no agent id"),
            (detail("number_dialed"), {"number_dialed": ""}, "no number dialed"),
            (detail("duration"), {"duration_seconds": None}, "no duration"),
            (detail("talk_time"), {"talk_time_seconds": None}, "no talk time"),
            (detail("language"), {"language": None}, "no language"),
            (detail("country"), {"country": None}, "no country"),
            (detail("call_groups"), {"call_groups": []}, "no call groups"),
            (field("score", "AIS", fmt="range"), {"scores": tei(5)}, "no score 'AIS'"),
            (field("score", "TEI", "question", "value"), {"scores": []}, "no score 'TEI'"),
            (field("custom_metadata", "region"), {"metadata": {}}, "metadata field 'region'"),
            (field("custom_metadata", "region"), {"metadata": {"region": None}}, "'region'"),
            (field("custom_metadata", "region"), {"metadata": {"region": " "}}, "'region'"),
            (field("call_group_type", "Site"), {}, "no call group of type 'Site'"),
        ],
    )
    def test_left_out_with_a_reason(
        self, one_field: DataField, changes: dict[str, Any], reason: str
    ) -> None:
        response = encode([one_field], interaction(**changes))
        [encoded] = response.fields
        assert encoded.value is None
        assert encoded.reason is not None
        assert reason in encoded.reason
        assert encoded.target is not None
        assert encoded.target.values_key not in response.values


class TestPlan:
    def test_keys_by_placement(self) -> None:
        fields = [
            detail("agent", "question"),
            field("category", "Frustration", "question", "boolean"),
            field("category_group", "Effort", "question", "group"),
            field("score", "TEI", "question", "range"),
            field("category", "Frustration", "question", "numeric"),
            field("score", "TEI", "embedded_data", "range", label="Effort index"),
        ]
        response = encode(fields)
        assert [one.target for one in response.fields] == [
            FieldTarget(kind=Placement.QUESTION, question_id="QID1", values_key="QID1_TEXT"),
            FieldTarget(kind=Placement.QUESTION, question_id="QID2", values_key="QID2"),
            FieldTarget(kind=Placement.QUESTION, question_id="QID3", values_key="QID3"),
            FieldTarget(kind=Placement.QUESTION, question_id="QID4", values_key="QID4_TEXT"),
            FieldTarget(kind=Placement.QUESTION, question_id="QID5", values_key="QID5_TEXT"),
            FieldTarget(
                kind=Placement.EMBEDDED_DATA,
                values_key="Effort index",
                embedded_field="Effort index",
                variable_type="Scale",
            ),
        ]
        assert {key: response.values[key] for key in list(response.values)[6:]} == {
            "QID1_TEXT": "Sam Agent",
            "QID2": 1,
            "QID3": [1],
            "QID4_TEXT": "4.6",
            "QID5_TEXT": 1,
            "Effort index": "4.6",
        }

    def test_the_preview_lists_every_field_in_order(self) -> None:
        fields = [field("score", "TEI", fmt="range"), field("customer_detail", "email")]
        response = encode(fields)
        assert [(one.position, one.field, one.target_key) for one in response.fields] == [
            (0, fields[0], "embedded_data:TEI"),
            (1, fields[1], "embedded_data:customer_email"),
        ]
        assert response.fields[0].model_dump()["value"] == "4.6"
        assert response.body() == {"values": response.values}
        assert response.fields is response.fields  # computed once

    def test_fields_not_in_the_survey_are_skipped(self) -> None:
        fields = [field("score", "TEI", fmt="range"), field("score", "AIS", "question", "range")]
        response = encode(fields, field_map={})
        assert [(one.target, one.value) for one in response.fields] == [(None, None)] * 2
        assert response.fields[0].reason == (
            "not in the survey yet: save the data fields to update the survey"
        )
        assert "TEI" not in response.values

    @pytest.mark.parametrize(
        "entry",
        [
            {"kind": "question", "question_id": "QID1"},
            {"kind": "embedded_data"},
            {"kind": "embedded_data", "field": ""},
            {"field": "TEI"},
        ],
    )
    def test_malformed_entries_are_skipped(self, entry: dict[str, Any]) -> None:
        one = field("score", "TEI", fmt="range")
        response = encode([one], field_map={target_key(one): entry})
        assert response.fields[0].reason == (
            "the field map entry of 'embedded_data:TEI' is not a valid embedded field"
        )

    def test_a_question_entry_must_name_a_question(self) -> None:
        one = field("score", "TEI", "question", "range")
        for entry in ({"kind": "question", "question_id": "Q1"}, {"kind": "embedded_data"}):
            response = encode([one], field_map={target_key(one): entry})
            assert response.fields[0].reason == (
                "the field map entry of 'score:TEI:range:question' is not a valid question"
            )

    def test_a_boolean_question_needs_yes_and_no(self) -> None:
        one = field("category", "Frustration", "question", "boolean")
        entry = {"kind": "question", "question_id": "QID9", "choices": {"Yes": "1"}}
        response = encode([one], field_map={target_key(one): entry})
        assert response.fields[0].reason == "question QID9 has no Yes/No choices"

    def test_a_values_key_is_filled_once(self) -> None:
        fields = [field("score", "TEI", fmt="range"), field("score", "AIS", fmt="range")]
        field_map = synced_field_map(fields)
        field_map["embedded_data:AIS"] = {"kind": "embedded_data", "field": "TEI"}
        field_map["embedded_data:TEI"]["field"] = "TEI"
        response = encode(fields, field_map=field_map)
        assert response.fields[1].reason == "its Qualtrics key 'TEI' is already filled by fields[0]"
        reserved = field("score", "AIS", fmt="range")
        bad_map = {"embedded_data:AIS": {"kind": "embedded_data", "field": "startDate"}}
        response = encode([reserved], field_map=bad_map)
        assert response.fields[0].reason == (
            "its Qualtrics key 'startDate' is already filled by the connector"
        )

    def test_invalid_fields_are_skipped_not_fatal(self) -> None:
        fields = [
            field("score", "TEI", "question", "boolean"),
            field("interaction_detail", "mood"),
            field("customer_detail", "address"),
        ]
        field_map = {
            target_key(one): {"kind": "question", "question_id": "QID1"} for one in fields[:1]
        }
        field_map.update(
            {target_key(one): {"kind": "embedded_data", "field": "x"} for one in fields[1:]}
        )
        response = encode(fields, field_map=field_map)
        assert [one.reason for one in response.fields] == [
            "format 'boolean' is not allowed for this field",
            "unknown interaction detail 'mood'",
            "unknown customer detail 'address'",
        ]

    def test_a_score_that_left_the_catalogue(self) -> None:
        one = field("score", "TEI", fmt="range")
        response = encode([one], field_map=synced_field_map([one]), catalog=CatalogDocument())
        assert response.fields[0].reason == "score 'TEI' is not in the catalogue"
        value = field("score", "AIS", fmt="value")
        response = encode(
            [value],
            field_map={"embedded_data:AIS_value": {"kind": "embedded_data", "field": "AIS_value"}},
        )
        assert response.fields[0].reason == "score 'AIS' has no labelled ranges in the catalogue"

    def test_encode_response_is_compile_then_encode(self) -> None:
        fields = [field("score", "TEI", fmt="range"), detail("date")]
        field_map = synced_field_map(fields)
        response = encode_response(
            interaction(), fields, field_map, CATALOG, trigger_name=TRIGGER, creovai_app_url=APP_URL
        )
        assert response.values == encode(fields).values

    def test_names_never_become_code(self) -> None:
        tricky = 'x\'] = 1; import os  # {key} \\""'
        catalog = CatalogDocument.model_validate(
            {
                **CATALOG_DOCUMENT,
                "categories": [{"name": tricky}],
                "category_groups": [{"name": tricky, "members": [tricky]}],
                "custom_metadata_fields": [{"name": tricky}],
            }
        )
        fields = [
            field("category", tricky, "question", "boolean"),
            field("category_group", tricky, fmt="group", label="group"),
            field("custom_metadata", tricky, label="meta"),
        ]
        field_map = synced_field_map(fields, catalog)
        plan = compile_plan(fields, field_map, catalog)
        assert tricky not in plan.source
        subject = interaction(categories=[{"name": tricky}], metadata={tricky: "v"})
        values = plan.values(subject, trigger_name="t", creovai_app_url=APP_URL)
        assert (values["QID1"], values["group"], values["meta"]) == (
            1,
            tricky.replace(",", ";"),
            "v",
        )

    def test_values_are_json(self) -> None:
        fields = [detail(key) for key in ("date", "duration", "link")]
        fields.append(field("category_group", "Effort", "question", "group"))
        values = encode(fields).values
        assert json.loads(json.dumps(values)) == values
