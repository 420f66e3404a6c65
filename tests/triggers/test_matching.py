"""The trigger engine: every criterion, time zones, sampling, ordering, and its properties.

Every example is evaluated by both evaluators (the per-trigger reference and the indexed
`TriggerSet`), which must agree.
"""

import copy
import hashlib
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.delivery.planner import Candidate, IntegrationRow
from service.delivery.planner import matches as planner_matches
from service.interactions.schemas import INTERACTION_EXAMPLE, Interaction
from service.models import IntegrationHealth
from service.triggers import index as trigger_index
from service.triggers.matching import (
    CompiledTrigger,
    InteractionFacts,
    TriggerSet,
    compile_trigger,
    first_match,
    sample_fraction,
)
from service.triggers.schemas import Criteria

TRIGGER_ID = uuid.UUID("0b7e9f1c-2d3a-4b5c-8d6e-7f8091a2b3c4")


def make_interaction(**changes: Any) -> Interaction:
    data = copy.deepcopy(INTERACTION_EXAMPLE)
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return Interaction.model_validate(data)


def compiled(criteria: dict[str, Any], trigger_id: uuid.UUID = TRIGGER_ID) -> CompiledTrigger:
    return compile_trigger(trigger_id, Criteria.model_validate(criteria))


def matches(criteria: dict[str, Any], interaction: Interaction | None = None) -> bool:
    """Both evaluators' answer, asserted equal."""
    interaction = interaction or make_interaction()
    trigger = compiled(criteria)
    reference = trigger.matches(interaction)
    indexed = TriggerSet([trigger]).first_match(interaction) is trigger
    assert reference == indexed, (criteria, interaction)
    return reference


def started(text: str) -> Interaction:
    return make_interaction(started_at=text, ended_at=...)


class TestEmptyCriteria:
    def test_empty_criteria_match(self) -> None:
        assert matches({})

    @pytest.mark.parametrize(
        "criteria",
        [
            {"channels": []},
            {"agents": [], "teams": [], "countries": []},
            {"categories": {"any": [], "all": [], "none": []}},
            {"metadata": {"region": []}},
            {"days_of_week": []},
        ],
    )
    def test_empty_lists_are_no_constraint(self, criteria: dict[str, Any]) -> None:
        assert matches(criteria, make_interaction(agent=None, call_groups=[], country=None))


class TestScalarLists:
    @pytest.mark.parametrize(
        ("criteria", "expected"),
        [
            ({"channels": ["call"]}, True),
            ({"channels": ["chat"]}, False),
            ({"channels": ["chat", "call"]}, True),
            ({"directions": ["inbound"]}, True),
            ({"directions": ["outbound", "internal"]}, False),
            ({"countries": ["GBR"]}, True),
            ({"countries": ["gbr"]}, True),  # codes are normalized
            ({"countries": ["USA"]}, False),
            ({"languages": ["eng"]}, True),
            ({"languages": ["ENG"]}, True),
            ({"languages": ["deu"]}, False),
            ({"numbers_dialed": ["+441234567890"]}, True),
            ({"numbers_dialed": ["441234567890"]}, False),  # exact
            ({"agents": ["agent-7", "agent-8"]}, True),
            ({"agents": ["Sam Agent"]}, False),  # ids, not names
            ({"customers": ["cust-42"]}, True),
            ({"customers": ["cust-43"]}, False),
            ({"teams": ["Billing"]}, True),
            ({"teams": ["billing"]}, False),  # exact
            ({"teams": ["Sales", "Billing"]}, True),
            ({"teams": ["t1"]}, False),  # names, not ids
        ],
    )
    def test_membership(self, criteria: dict[str, Any], expected: bool) -> None:
        assert matches(criteria) is expected

    def test_unknown_direction_is_a_value_like_any_other(self) -> None:
        interaction = make_interaction(direction=...)
        assert matches({"directions": ["unknown"]}, interaction)
        assert not matches({"directions": ["inbound"]}, interaction)

    @pytest.mark.parametrize(
        ("criteria", "changes"),
        [
            ({"countries": ["GBR"]}, {"country": None}),
            ({"languages": ["eng"]}, {"language": None}),
            ({"numbers_dialed": ["+441234567890"]}, {"number_dialed": None}),
            ({"agents": ["agent-7"]}, {"agent": None}),
            ({"agents": ["agent-7"]}, {"agent": {"name": "No id"}}),
            ({"customers": ["cust-42"]}, {"customer": None}),
            ({"teams": ["Billing"]}, {"call_groups": []}),
        ],
    )
    def test_absent_fact_does_not_match(
        self, criteria: dict[str, Any], changes: dict[str, Any]
    ) -> None:
        assert not matches(criteria, make_interaction(**changes))

    def test_any_of_several_call_groups(self) -> None:
        interaction = make_interaction(
            call_groups=[{"name": "Sales", "type": "Team"}, {"name": "London", "type": "Site"}]
        )
        assert matches({"teams": ["London"]}, interaction)
        assert not matches({"teams": ["Billing"]}, interaction)


class TestNumericRanges:
    @pytest.mark.parametrize(
        ("bounds", "expected"),
        [
            ({"min": 390}, True),  # inclusive
            ({"max": 390}, True),  # inclusive
            ({"min": 390, "max": 390}, True),
            ({"min": 390.5}, False),
            ({"max": 389.9}, False),
            ({"min": 0, "max": 1000}, True),
            ({}, True),
        ],
    )
    def test_duration_bounds_are_inclusive(self, bounds: dict[str, Any], expected: bool) -> None:
        assert matches({"duration_seconds": bounds}) is expected

    def test_talk_time(self) -> None:
        assert matches({"talk_time_seconds": {"min": 342, "max": 342}})
        assert not matches({"talk_time_seconds": {"max": 341}})

    @pytest.mark.parametrize("key", ["duration_seconds", "talk_time_seconds"])
    def test_absent_value_does_not_match(self, key: str) -> None:
        assert not matches({key: {"min": 0}}, make_interaction(**{key: None}))
        assert not matches({key: {}}, make_interaction(**{key: None}))


class TestScores:
    @pytest.mark.parametrize(
        ("scores", "expected"),
        [
            ({"TEI": {"min": 4.6}}, True),
            ({"TEI": {"max": 4.6}}, True),
            ({"TEI": {"min": 0, "max": 3.3}}, False),
            ({"TEI": {"max": 5}, "AIS": {"min": 7}}, True),
            ({"TEI": {"max": 5}, "AIS": {"min": 7.5}}, False),
            ({"TEI": {}}, True),  # the score exists
            ({"Custom": {}}, False),
            ({"Custom": {"min": -100}}, False),  # absent score never matches a constraint
        ],
    )
    def test_score_bounds(self, scores: dict[str, Any], expected: bool) -> None:
        assert matches({"scores": scores}) is expected

    def test_first_of_a_repeated_score_counts(self) -> None:
        interaction = make_interaction(
            scores=[{"name": "TEI", "value": 2}, {"name": "TEI", "value": 9}]
        )
        assert matches({"scores": {"TEI": {"max": 3}}}, interaction)
        assert not matches({"scores": {"TEI": {"min": 9}}}, interaction)


class TestCategories:
    INTERACTION: dict[str, Any] = {  # noqa: RUF012
        "categories": [
            {"name": "Frustration", "groups": ["Effort", "Sentiment"], "occurrences": 2},
            {"name": "Repeat contact", "groups": ["Effort"], "occurrences": 1},
            {"name": "Praise", "groups": ["Sentiment"], "occurrences": 0},  # did not occur
        ]
    }

    @pytest.mark.parametrize(
        ("rule", "expected"),
        [
            ({"any": ["Frustration", "Cancellation"]}, True),
            ({"any": ["Cancellation"]}, False),
            ({"any": ["Praise"]}, False),  # zero occurrences
            ({"all": ["Frustration", "Repeat contact"]}, True),
            ({"all": ["Frustration", "Cancellation"]}, False),
            ({"none": ["Cancellation", "Praise"]}, True),
            ({"none": ["Repeat contact"]}, False),
            ({"any": ["Frustration"], "all": ["Repeat contact"], "none": ["Praise"]}, True),
            ({"any": ["Frustration"], "none": ["Frustration"]}, False),
        ],
    )
    def test_categories(self, rule: dict[str, Any], expected: bool) -> None:
        assert matches({"categories": rule}, make_interaction(**self.INTERACTION)) is expected

    @pytest.mark.parametrize(
        ("rule", "expected"),
        [
            ({"any": ["Effort"]}, True),
            ({"any": ["Compliance"]}, False),
            ({"all": ["Effort", "Sentiment"]}, True),  # Sentiment via Frustration
            ({"none": ["Sentiment"]}, False),
            ({"none": ["Compliance"]}, True),
        ],
    )
    def test_category_groups(self, rule: dict[str, Any], expected: bool) -> None:
        interaction = make_interaction(**self.INTERACTION)
        assert matches({"category_groups": rule}, interaction) is expected

    def test_groups_of_categories_that_did_not_occur_do_not_count(self) -> None:
        interaction = make_interaction(
            categories=[{"name": "Praise", "groups": ["Sentiment"], "occurrences": 0}]
        )
        assert not matches({"category_groups": {"any": ["Sentiment"]}}, interaction)
        assert matches({"category_groups": {"none": ["Sentiment"]}}, interaction)

    def test_no_categories(self) -> None:
        interaction = make_interaction(categories=[])
        assert not matches({"categories": {"any": ["Frustration"]}}, interaction)
        assert not matches({"categories": {"all": ["Frustration"]}}, interaction)
        assert matches({"categories": {"none": ["Frustration"]}}, interaction)


class TestMetadata:
    @pytest.mark.parametrize(
        ("value", "listed", "expected"),
        [
            ("EMEA", ["EMEA", "APAC"], True),
            ("EMEA", ["emea"], False),  # exact text
            ("EMEA ", ["EMEA"], False),
            (5, ["5"], True),
            (5, [5], True),
            (5.0, ["5"], True),
            (5, [5.0], True),
            (4.25, ["4.25"], True),
            (True, ["true"], True),
            (True, [True], True),
            (False, ["true"], False),
            ("5", [5], True),
            (None, ["None", "null", ""], False),  # null is absent
        ],
    )
    def test_values_compare_as_text(self, value: Any, listed: list[Any], expected: bool) -> None:
        interaction = make_interaction(metadata={"region": value})
        assert matches({"metadata": {"region": listed}}, interaction) is expected

    def test_absent_field_does_not_match(self) -> None:
        assert not matches({"metadata": {"product": ["x"]}})

    def test_every_field_must_match(self) -> None:
        interaction = make_interaction(metadata={"region": "EMEA", "tier": 1})
        assert matches({"metadata": {"region": ["EMEA"], "tier": ["1", "2"]}}, interaction)
        assert not matches({"metadata": {"region": ["EMEA"], "tier": ["2"]}}, interaction)


class TestTime:
    def test_day_of_week_in_the_triggers_timezone(self) -> None:
        # Sunday 23:30 UTC is Monday 00:30 in Berlin (CET, UTC+1).
        interaction = started("2026-11-29T23:30:00Z")
        assert matches({"days_of_week": [7]}, interaction)
        assert not matches({"days_of_week": [1]}, interaction)
        assert matches({"days_of_week": [1], "timezone": "Europe/Berlin"}, interaction)
        assert not matches({"days_of_week": [7], "timezone": "Europe/Berlin"}, interaction)

    def test_payload_offset_does_not_matter_only_the_instant(self) -> None:
        same_instant = started("2026-11-30T08:30:00+09:00")  # 2026-11-29T23:30Z
        assert matches({"days_of_week": [7]}, same_instant)
        assert matches({"days_of_week": [1], "timezone": "Europe/Berlin"}, same_instant)

    def test_date_to_is_inclusive_in_the_triggers_timezone(self) -> None:
        interaction = started("2026-11-29T23:30:00Z")  # 2026-11-30 00:30 in Berlin
        assert matches({"date_to": "2026-11-29"}, interaction)
        assert not matches({"date_to": "2026-11-29", "timezone": "Europe/Berlin"}, interaction)
        assert matches({"date_to": "2026-11-30", "timezone": "Europe/Berlin"}, interaction)
        last_moment = started("2026-11-29T23:59:59.999999+00:00")
        assert matches({"date_to": "2026-11-29"}, last_moment)

    def test_date_from_is_inclusive(self) -> None:
        interaction = started("2026-11-30T00:00:00+01:00")  # 2026-11-29T23:00Z
        assert matches({"date_from": "2026-11-30", "timezone": "Europe/Berlin"}, interaction)
        assert not matches({"date_from": "2026-11-30"}, interaction)
        assert matches({"date_from": "2026-11-29", "date_to": "2026-11-29"}, interaction)

    @pytest.mark.parametrize(
        ("start", "window", "expected"),
        [
            ("09:00:00", ("09:00", "17:00"), True),  # from inclusive
            ("08:59:59", ("09:00", "17:00"), False),
            ("16:59:59", ("09:00", "17:00"), True),
            ("17:00:00", ("09:00", "17:00"), False),  # to exclusive
            ("23:30:00", ("22:00", "06:00"), True),  # wraps midnight
            ("00:00:00", ("22:00", "06:00"), True),
            ("05:59:59", ("22:00", "06:00"), True),
            ("06:00:00", ("22:00", "06:00"), False),
            ("12:00:00", ("22:00", "06:00"), False),
            ("21:59:59", ("22:00", "06:00"), False),
            ("22:00:00", ("22:00", "06:00"), True),
            ("18:00:00", ("18:00", "00:00"), True),  # until midnight
            ("23:59:59", ("18:00", "00:00"), True),
            ("00:00:00", ("18:00", "00:00"), False),
            ("09:30:29", ("09:30:30", "09:31"), False),
            ("09:30:30", ("09:30:30", "09:31"), True),
        ],
    )
    def test_time_of_day(self, start: str, window: tuple[str, str], expected: bool) -> None:
        interaction = started(f"2026-11-26T{start}Z")
        criteria = {"time_of_day": {"from": window[0], "to": window[1]}}
        assert matches(criteria, interaction) is expected

    def test_subsecond_before_from_is_outside(self) -> None:
        interaction = started("2026-11-26T08:59:59.999999Z")
        assert not matches({"time_of_day": {"from": "09:00", "to": "17:00"}}, interaction)

    def test_time_of_day_in_the_triggers_timezone(self) -> None:
        interaction = started("2026-11-26T23:30:00Z")  # 00:30 Berlin, 18:30 New York
        window = {"from": "00:00", "to": "01:00"}
        assert not matches({"time_of_day": window}, interaction)
        assert matches({"time_of_day": window, "timezone": "Europe/Berlin"}, interaction)
        business = {"from": "09:00", "to": "19:00"}
        assert matches({"time_of_day": business, "timezone": "America/New_York"}, interaction)

    def test_daylight_saving_time(self) -> None:
        # 07:30 UTC is 09:30 in Berlin in summer (CEST) and 08:30 in winter (CET).
        window = {"time_of_day": {"from": "09:00", "to": "10:00"}, "timezone": "Europe/Berlin"}
        assert matches(window, started("2026-07-01T07:30:00Z"))
        assert not matches(window, started("2026-12-01T07:30:00Z"))

    def test_all_time_criteria_together(self) -> None:
        criteria = {
            "date_from": "2026-11-01",
            "date_to": "2026-11-30",
            "days_of_week": [1, 2, 3, 4, 5],
            "time_of_day": {"from": "08:00", "to": "18:00"},
            "timezone": "Europe/London",
        }
        assert matches(criteria, started("2026-11-26T09:15:00+01:00"))  # Thu 08:15 London
        assert not matches(criteria, started("2026-11-26T08:15:00+01:00"))  # 07:15 London
        assert not matches(criteria, started("2026-11-28T09:15:00Z"))  # Saturday
        assert not matches(criteria, started("2026-12-01T09:15:00Z"))  # after date_to


def expected_kept(trigger_id: uuid.UUID, interaction_id: str, rate: float) -> bool:
    """The design's formula, literally."""
    digest = hashlib.sha256(f"{trigger_id}:{interaction_id}".encode()).hexdigest()
    return int(digest[:8], 16) / 2**32 < rate


class TestSampleRate:
    @pytest.mark.parametrize("rate", [0.0, 0.1, 0.25, 0.5, 0.9, 1.0])
    def test_exact_formula(self, rate: float) -> None:
        for index in range(200):
            interaction_id = f"call-{index:06d}"
            interaction = make_interaction(id=interaction_id)
            expected = expected_kept(TRIGGER_ID, interaction_id, rate)
            assert matches({"sample_rate": rate}, interaction) is expected

    def test_fraction_is_the_first_eight_hex_digits(self) -> None:
        digest = hashlib.sha256(f"{TRIGGER_ID}:call-000123".encode()).hexdigest()
        assert sample_fraction(TRIGGER_ID, "call-000123") == int(digest[:8], 16) / 2**32

    def test_exact_boundary(self) -> None:
        digest = hashlib.sha256(f"{TRIGGER_ID}:call-000123".encode()).hexdigest()
        h = int(digest[:8], 16)
        interaction = make_interaction(id="call-000123")
        assert not matches({"sample_rate": h / 2**32}, interaction)  # below, strictly
        assert matches({"sample_rate": (h + 1) / 2**32}, interaction)
        assert matches({"sample_rate": (h + 0.5) / 2**32}, interaction)
        assert matches({"sample_rate": 1 - 2**-53}, interaction)

    def test_deterministic_per_trigger_and_interaction(self) -> None:
        interaction = make_interaction(id="call-77")
        first = [matches({"sample_rate": 0.5}, interaction) for _ in range(5)]
        assert len(set(first)) == 1

    def test_rate_zero_keeps_nothing_and_one_keeps_everything(self) -> None:
        assert not matches({"sample_rate": 0})
        assert matches({"sample_rate": 1})

    def test_roughly_the_rate(self) -> None:
        trigger = compiled({"sample_rate": 0.3})
        kept = sum(
            trigger.matches(make_interaction(id=f"interaction-{index}")) for index in range(2000)
        )
        assert 500 < kept < 700

    def test_differs_between_triggers(self) -> None:
        other = uuid.UUID(int=1)
        ids = [f"call-{index}" for index in range(200)]
        mine = {i for i in ids if expected_kept(TRIGGER_ID, i, 0.5)}
        theirs = {i for i in ids if expected_kept(other, i, 0.5)}
        assert mine != theirs

    def test_applies_after_the_other_criteria(self) -> None:
        kept_id = next(
            f"c{index}" for index in range(100) if expected_kept(TRIGGER_ID, f"c{index}", 0.5)
        )
        assert matches({"sample_rate": 0.5}, make_interaction(id=kept_id))
        assert not matches({"sample_rate": 0.5, "channels": ["chat"]}, make_interaction(id=kept_id))


class TestFirstMatch:
    def triggers(self, *criteria: dict[str, Any], enabled: tuple[bool, ...] = ()) -> list[Any]:
        return [
            compile_trigger(
                uuid.UUID(int=index + 1),
                Criteria.model_validate(item),
                name=f"t{index}",
                enabled=enabled[index] if enabled else True,
                position=index,
            )
            for index, item in enumerate(criteria)
        ]

    def test_first_by_position(self) -> None:
        triggers = self.triggers({"channels": ["chat"]}, {"channels": ["call"]}, {})
        assert first_match(triggers, make_interaction()) is triggers[1]
        assert first_match(TriggerSet(triggers), make_interaction()) is triggers[1]

    def test_disabled_triggers_are_skipped(self) -> None:
        triggers = self.triggers({}, {"countries": ["GBR"]}, {}, enabled=(False, True, True))
        assert first_match(triggers, make_interaction()) is triggers[1]
        assert first_match(triggers, make_interaction(country="USA")) is triggers[2]

    def test_none_when_nothing_matches(self) -> None:
        triggers = self.triggers({"channels": ["chat"]}, {}, enabled=(True, False))
        assert first_match(triggers, make_interaction()) is None
        assert first_match([], make_interaction()) is None
        assert first_match(TriggerSet([]), make_interaction()) is None

    def test_sampled_out_falls_through_to_the_next(self) -> None:
        interaction = make_interaction(id="call-1")
        triggers = self.triggers({"sample_rate": 0}, {"sample_rate": 1}, {})
        assert first_match(triggers, interaction) is triggers[1]
        halves = self.triggers(*({"sample_rate": 0.5} for _ in range(20)))
        kept = [t for t in halves if expected_kept(t.id, "call-1", 0.5)]
        assert 0 < len(kept) < 20  # for this id, some are sampled out and some kept
        assert first_match(halves, interaction) is kept[0]

    def test_reused_list_is_reindexed_after_it_changes(self) -> None:
        triggers = self.triggers({"channels": ["chat"]}, {"channels": ["call"]})
        interaction = make_interaction()
        assert first_match(triggers, interaction) is triggers[1]
        triggers.insert(0, self.triggers({})[0])
        assert first_match(triggers, interaction) is triggers[0]
        triggers.clear()
        assert first_match(triggers, interaction) is None

    def test_generators_are_accepted(self) -> None:
        triggers = self.triggers({"channels": ["chat"]}, {})
        assert first_match(iter(triggers), make_interaction()) is triggers[1]

    def test_trigger_set_is_a_read_only_sequence(self) -> None:
        triggers = self.triggers({}, {}, {}, enabled=(True, False, True))
        trigger_set = TriggerSet(triggers)
        assert len(trigger_set) == 3
        assert list(trigger_set) == triggers
        assert trigger_set[1] is triggers[1]
        assert list(trigger_set[1:]) == triggers[1:]
        assert trigger_set.enabled == (triggers[0], triggers[2])
        assert trigger_set.all_matches(make_interaction()) == [triggers[0], triggers[2]]
        assert "3 triggers, 2 enabled" in repr(trigger_set)

    def test_many_triggers_share_indexes(self) -> None:
        # 150 triggers: more bits than a machine word, mixed criteria.
        criteria = []
        for index in range(150):
            criteria.append(
                {
                    "scores": {"TEI": {"min": index / 10}},
                    "agents": [f"agent-{index % 10}"],
                    "timezone": ["UTC", "Europe/Berlin"][index % 2],
                    "days_of_week": [1 + index % 7],
                }
            )
        triggers = self.triggers(*criteria)
        interaction = make_interaction()  # agent-7, TEI 4.6, Thursday 08:15 UTC
        expected = [t for t in triggers if t.matches(interaction)]
        assert expected  # e.g. index 17: TEI >= 1.7, agent-7, Thursday
        assert TriggerSet(triggers).all_matches(interaction) == expected
        assert first_match(triggers, interaction) is expected[0]


# --- Properties ---------------------------------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]
OFFSETS = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
CATEGORIES = ["A", "B", "C"]
GROUPS = ["G1", "G2"]


def _subset(values: list[Any], max_size: int | None = None) -> st.SearchStrategy[list[Any]]:
    return st.lists(st.sampled_from(values), unique=True, max_size=max_size or len(values))


def _optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


interactions = st.builds(
    lambda **data: Interaction.model_validate(
        {key: value for key, value in data.items() if value is not None}
    ),
    id=st.text("abcdef0123456789-", min_size=1, max_size=12),
    channel=st.sampled_from(["call", "chat"]),
    direction=st.sampled_from(["inbound", "outbound", "internal", "unknown"]),
    started_at=st.datetimes(
        min_value=datetime(2025, 12, 25),  # noqa: DTZ001 (hypothesis adds the zone)
        max_value=datetime(2026, 1, 8),  # noqa: DTZ001
        timezones=st.sampled_from(OFFSETS),
    ),
    duration_seconds=_optional(st.integers(0, 100)),
    talk_time_seconds=_optional(st.floats(0, 100)),
    language=_optional(st.sampled_from(["eng", "deu"])),
    country=_optional(st.sampled_from(["GBR", "USA"])),
    number_dialed=_optional(st.sampled_from(["1", "2"])),
    agent=_optional(st.fixed_dictionaries({}, optional={"id": st.sampled_from(["a1", "a2"])})),
    customer=_optional(st.fixed_dictionaries({"id": st.sampled_from(["c1", "c2"])})),
    call_groups=st.lists(st.fixed_dictionaries({"name": st.sampled_from(["S", "B"])}), max_size=2),
    categories=st.lists(
        st.fixed_dictionaries(
            {
                "name": st.sampled_from(CATEGORIES),
                "groups": _subset(GROUPS),
                "occurrences": st.integers(0, 2),
            }
        ),
        max_size=3,
    ),
    scores=st.lists(
        st.fixed_dictionaries(
            {"name": st.sampled_from(["TEI", "AIS"]), "value": st.integers(-5, 5)}
        ),
        max_size=3,
    ),
    metadata=st.dictionaries(
        st.sampled_from(["region", "tier"]),
        st.sampled_from(["EMEA", "APAC", 1, 1.0, "1", True, None]),
        max_size=2,
    ),
)


def _bounds(low: int, high: int) -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda a, b, keep: {
            key: value for key, value in (("min", min(a, b)), ("max", max(a, b))) if key in keep
        },
        st.integers(low, high),
        st.integers(low, high),
        _subset(["min", "max"]),
    )


def _time_text() -> st.SearchStrategy[str]:
    return st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23), st.sampled_from([0, 30]))


def _dates() -> st.SearchStrategy[tuple[str, str]]:
    days = st.integers(0, 14).map(lambda n: datetime(2025, 12, 25) + timedelta(days=n))  # noqa: DTZ001
    return st.tuples(days, days).map(
        lambda pair: (min(pair).date().isoformat(), max(pair).date().isoformat())
    )


CRITERIA_PARTS: dict[str, st.SearchStrategy[Any]] = {
    "channels": _subset(["call", "chat"]),
    "directions": _subset(["inbound", "outbound", "internal", "unknown"]),
    "countries": _subset(["GBR", "USA", "DEU"]),
    "languages": _subset(["eng", "deu"]),
    "numbers_dialed": _subset(["1", "2", "3"]),
    "agents": _subset(["a1", "a2", "a3"]),
    "customers": _subset(["c1", "c2"]),
    "teams": _subset(["S", "B", "X"]),
    "duration_seconds": _bounds(0, 100),
    "talk_time_seconds": _bounds(0, 100),
    "categories": st.fixed_dictionaries(
        {}, optional={key: _subset(CATEGORIES, 2) for key in ("any", "all", "none")}
    ),
    "category_groups": st.fixed_dictionaries(
        {}, optional={key: _subset(GROUPS, 1) for key in ("any", "all", "none")}
    ),
    "scores": st.dictionaries(st.sampled_from(["TEI", "AIS", "X"]), _bounds(-5, 5), max_size=2),
    "metadata": st.dictionaries(
        st.sampled_from(["region", "tier"]),
        _subset(["EMEA", "APAC", "1", "true"], 2),
        max_size=2,
    ),
    "days_of_week": _subset([1, 2, 3, 4, 5, 6, 7], 3),
    "time_of_day": st.tuples(_time_text(), _time_text())
    .filter(lambda pair: pair[0] != pair[1])
    .map(lambda pair: {"from": pair[0], "to": pair[1]}),
    "timezone": st.sampled_from(ZONES),
    "sample_rate": st.sampled_from([0.0, 0.3, 0.5, 0.8, 1.0]),
}


@st.composite
def criteria_dicts(draw: st.DrawFn) -> dict[str, Any]:
    keys = draw(_subset(sorted(CRITERIA_PARTS), 4))
    criteria = {key: draw(CRITERIA_PARTS[key]) for key in keys}
    if draw(st.booleans()):
        date_from, date_to = draw(_dates())
        criteria.update(date_from=date_from, date_to=date_to)
        if draw(st.booleans()):
            criteria.pop(draw(st.sampled_from(["date_from", "date_to"])))
    return criteria


trigger_ids = st.uuids()


class TestProperties:
    @given(interaction=interactions, trigger_id=trigger_ids)
    def test_empty_criteria_match_everything(
        self, interaction: Interaction, trigger_id: uuid.UUID
    ) -> None:
        assert compile_trigger(trigger_id, Criteria()).matches(interaction)

    @given(
        base=criteria_dicts(),
        extra=criteria_dicts(),
        interaction=interactions,
        trigger_id=trigger_ids,
    )
    def test_adding_a_constraint_never_adds_matches(
        self,
        base: dict[str, Any],
        extra: dict[str, Any],
        interaction: Interaction,
        trigger_id: uuid.UUID,
    ) -> None:
        # The timezone is not a constraint of its own: it changes how time criteria read.
        additions = {
            key: value
            for key, value in extra.items()
            if key not in base and key not in {"timezone", "date_from", "date_to"}
        }
        narrower = {**base, **additions}
        if compile_trigger(trigger_id, Criteria.model_validate(narrower)).matches(interaction):
            assert compile_trigger(trigger_id, Criteria.model_validate(base)).matches(interaction)

    @given(
        interaction=interactions,
        trigger_id=trigger_ids,
        rates=st.tuples(st.floats(0, 1), st.floats(0, 1)).map(sorted),
    )
    def test_sample_rate_is_monotonic(
        self, interaction: Interaction, trigger_id: uuid.UUID, rates: list[float]
    ) -> None:
        low, high = rates
        kept_low = compile_trigger(trigger_id, Criteria(sample_rate=low)).matches(interaction)
        kept_high = compile_trigger(trigger_id, Criteria(sample_rate=high)).matches(interaction)
        assert kept_high or not kept_low
        assert kept_low == expected_kept(trigger_id, interaction.id, low)

    @settings(max_examples=200)
    @given(
        criteria=st.lists(criteria_dicts(), max_size=8),
        enabled=st.lists(st.booleans(), min_size=8, max_size=8),
        interaction=interactions,
    )
    def test_indexed_and_reference_evaluators_agree(
        self, criteria: list[dict[str, Any]], enabled: list[bool], interaction: Interaction
    ) -> None:
        triggers = [
            compile_trigger(
                uuid.UUID(int=index + 1),
                Criteria.model_validate(item),
                enabled=enabled[index],
                position=index,
            )
            for index, item in enumerate(criteria)
        ]
        expected = [t for t in triggers if t.enabled and t.matches(interaction)]
        trigger_set = TriggerSet(triggers)
        assert trigger_set.all_matches(interaction) == expected
        assert trigger_set.first_match(interaction) is (expected[0] if expected else None)

    @settings(max_examples=100)
    @given(criteria=st.lists(criteria_dicts(), min_size=20, max_size=70), data=st.data())
    def test_evaluators_agree_on_many_triggers(
        self, criteria: list[dict[str, Any]], data: st.DataObject
    ) -> None:
        # Many triggers mixing every kind of criterion: the indexed evaluator skips a kind once
        # no trigger still in uses it, evaluates categories and groups in one pass, and hashes
        # sampled triggers from a copied prefix; none of that may change an answer. The same
        # set is asked about several interactions, parsed from JSON as the intake parses them.
        triggers = [
            compile_trigger(uuid.UUID(int=index + 1), Criteria.model_validate(item), position=index)
            for index, item in enumerate(criteria)
        ]
        trigger_set = TriggerSet(triggers)
        for subject in data.draw(st.lists(interactions, min_size=1, max_size=3)):
            parsed = Interaction.model_validate_json(subject.model_dump_json())
            expected = [t for t in triggers if t.matches(parsed)]
            assert trigger_set.all_matches(parsed) == expected
            assert trigger_set.first_match(parsed) is (expected[0] if expected else None)


# --- Facts shared between trigger sets (planning) ------------------------------------------


def _trigger_sets(criteria: list[list[dict[str, Any]]], enabled: list[bool]) -> list[TriggerSet]:
    """One set per integration; trigger ids differ between sets, so samples differ too."""
    flags = iter(enabled * (1 + sum(map(len, criteria)) // max(len(enabled), 1)))
    return [
        TriggerSet(
            compile_trigger(
                uuid.UUID(int=(number + 1) << 32 | index + 1),
                Criteria.model_validate(item),
                name=f"t{number}.{index}",
                enabled=next(flags, True),
                position=index,
            )
            for index, item in enumerate(items)
        )
        for number, items in enumerate(criteria)
    ]


class TestSharedFacts:
    @settings(max_examples=150)
    @given(
        criteria=st.lists(st.lists(criteria_dicts(), max_size=10), min_size=1, max_size=8),
        enabled=st.lists(st.booleans(), min_size=1, max_size=8),
        subjects=st.lists(interactions, min_size=1, max_size=3),
        order=st.randoms(use_true_random=False),
    )
    def test_shared_facts_agree_with_a_fresh_call_per_set(
        self,
        criteria: list[list[dict[str, Any]]],
        enabled: list[bool],
        subjects: list[Interaction],
        order: Any,
    ) -> None:
        # Planning builds one `InteractionFacts` and asks every integration's set about it:
        # whichever set fills a fact first, every other set must read the same answer as a call
        # of its own on the bare interaction (and as the per-trigger reference).
        trigger_sets = _trigger_sets(criteria, enabled)
        for subject in subjects:
            interaction = Interaction.model_validate_json(subject.model_dump_json())
            facts = InteractionFacts(interaction)
            for _ in range(2):  # the second pass reads facts every set has filled by now
                order.shuffle(trigger_sets)
                for trigger_set in trigger_sets:
                    expected = [t for t in trigger_set.enabled if t.matches(interaction)]
                    alone = trigger_set.first_match(interaction)
                    assert alone is (expected[0] if expected else None)
                    assert trigger_set.first_match(facts) is alone
                    assert first_match(trigger_set, facts) is alone
                    assert trigger_set.all_matches(facts) == trigger_set.all_matches(interaction)

    @settings(max_examples=100)
    @given(
        criteria=st.lists(st.lists(criteria_dicts(), max_size=6), max_size=8),
        enabled=st.lists(st.booleans(), min_size=1, max_size=8),
        interaction=interactions,
        data=st.data(),
    )
    def test_planner_matches_agree_with_a_call_per_integration(
        self,
        criteria: list[list[dict[str, Any]]],
        enabled: list[bool],
        interaction: Interaction,
        data: st.DataObject,
    ) -> None:
        candidates = [
            Candidate(
                IntegrationRow(
                    uuid.UUID(int=number + 1), enabled=True, health=IntegrationHealth.OK
                ),
                trigger_set,
            )
            for number, trigger_set in enumerate(_trigger_sets(criteria, enabled))
        ]
        skip = frozenset(
            data.draw(st.lists(st.sampled_from([c.integration.id for c in candidates])))
            if candidates
            else ()
        )
        expected = [
            (candidate.integration, trigger)
            for candidate in candidates
            if candidate.integration.id not in skip
            and (trigger := candidate.triggers.first_match(interaction)) is not None
        ]
        assert list(planner_matches(interaction, candidates, skip=skip)) == expected

    def test_each_fact_is_derived_once_for_all_sets(self, monkeypatch: pytest.MonkeyPatch) -> None:
        calls: dict[str, int] = {"metadata_text": 0, "micros_of_day": 0}

        def counted(name: str, function: Any) -> Any:
            def wrapper(*args: Any) -> Any:
                calls[name] += 1
                return function(*args)

            return wrapper

        monkeypatch.setattr(
            trigger_index, "metadata_text", counted("metadata_text", trigger_index.metadata_text)
        )
        monkeypatch.setattr(
            trigger_index, "micros_of_day", counted("micros_of_day", trigger_index.micros_of_day)
        )
        criteria = {
            "metadata": {"region": ["APAC"], "tier": ["1"]},
            "time_of_day": {"from": "00:00", "to": "23:00"},
            "timezone": "Europe/Berlin",
        }
        trigger_sets = [
            TriggerSet(
                [compile_trigger(uuid.UUID(int=number + 1), Criteria.model_validate(criteria))]
            )
            for number in range(50)
        ]
        interaction = make_interaction(metadata={"region": "EMEA", "tier": 1})
        facts = InteractionFacts(interaction)
        assert all(trigger_set.first_match(facts) is None for trigger_set in trigger_sets)
        assert calls == {"metadata_text": 2, "micros_of_day": 0}  # region rejects: no time
        assert facts.metadata_texts == {"region": "EMEA", "tier": "1"}
        assert facts.category_names() is facts.category_names()
        assert facts.scores() is facts.scores()
        assert facts.team_names() is facts.team_names()

        calls.update(metadata_text=0)
        matching = make_interaction(metadata={"region": "APAC", "tier": 1.0})
        facts = InteractionFacts(matching)
        found = [trigger_set.first_match(facts) for trigger_set in trigger_sets]
        assert found == [trigger_set[0] for trigger_set in trigger_sets]
        assert calls == {"metadata_text": 2, "micros_of_day": 1}
        assert list(facts.local_starts) == [trigger_sets[0][0].time.zone]  # type: ignore[union-attr]
