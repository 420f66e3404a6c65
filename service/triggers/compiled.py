"""Criteria compiled once into sets, bounds and a zone, and the per-trigger reference check.

The semantics are written out in `service.triggers.matching`.
"""

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from hashlib import sha256
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

from service.interactions.schemas import Interaction
from service.triggers.schemas import Criteria, metadata_text, time_of_day_seconds

_INF = float("inf")
_TWO_POW_32 = 4294967296.0
_MICROS_PER_SECOND = 1_000_000
KEEP_NONE = bytes(4)  # the sample bound of rate 0

Check = Callable[[Interaction], bool]


def sample_fraction(trigger_id: UUID, interaction_id: str) -> float:
    """The interaction's deterministic place in [0, 1) for this trigger's sample."""
    digest = sha256(f"{trigger_id}:{interaction_id}".encode()).digest()
    # The first 4 bytes, big-endian, are the first 8 hex digits of the hexdigest.
    return int.from_bytes(digest[:4], "big") / _TWO_POW_32


@dataclass(frozen=True, slots=True)
class CategoryRule:
    """`any` / `all` / `none` over a set of names; None where the list was empty."""

    any: frozenset[str] | None
    all: frozenset[str] | None
    none: frozenset[str] | None

    def accepts(self, names: frozenset[str]) -> bool:
        if self.any is not None and self.any.isdisjoint(names):
            return False
        if self.all is not None and not self.all <= names:
            return False
        return self.none is None or self.none.isdisjoint(names)


@dataclass(frozen=True, slots=True)
class TimeRule:
    """Date, weekday and time-of-day constraints read in one zone (micros after midnight)."""

    zone: ZoneInfo
    date_from: date | None
    date_to: date | None
    days: frozenset[int] | None
    window: tuple[int, int] | None

    def accepts(self, interaction: Interaction) -> bool:
        local = interaction.started_at.astimezone(self.zone)
        if self.date_from is not None or self.date_to is not None:
            day = local.date()
            if self.date_from is not None and day < self.date_from:
                return False
            if self.date_to is not None and day > self.date_to:
                return False
        if self.days is not None and local.isoweekday() not in self.days:
            return False
        return self.window is None or in_window(micros_of_day(local), self.window)


def micros_of_day(local: datetime) -> int:
    seconds = (local.hour * 60 + local.minute) * 60 + local.second
    return seconds * _MICROS_PER_SECOND + local.microsecond


def in_window(micros: int, window: tuple[int, int]) -> bool:
    start, end = window
    if start < end:
        return start <= micros < end
    return micros >= start or micros < end  # wraps midnight


@dataclass(frozen=True, slots=True, eq=False)
class CompiledTrigger:
    """A trigger's criteria turned into sets, bounds and a zone, ready to evaluate.

    None means "no constraint" everywhere. Instances compare by identity.
    """

    id: UUID
    criteria: Criteria
    name: str
    enabled: bool
    position: int
    channels: frozenset[str] | None
    directions: frozenset[str] | None
    countries: frozenset[str] | None
    languages: frozenset[str] | None
    numbers_dialed: frozenset[str] | None
    agents: frozenset[str] | None
    customers: frozenset[str] | None
    duration: tuple[float, float] | None
    talk_time: tuple[float, float] | None
    teams: frozenset[str] | None
    categories: CategoryRule | None
    category_groups: CategoryRule | None
    scores: tuple[tuple[str, float, float], ...]
    metadata: tuple[tuple[str, frozenset[str]], ...]
    time: TimeRule | None
    # Keep when sha256(prefix + interaction id) sorts below this (see `_sample_bound`); None
    # when the rate keeps everything.
    sample_bound: bytes | None
    sample_prefix: bytes
    _checks: tuple[Check, ...] = field(repr=False)

    def matches(self, interaction: Interaction) -> bool:
        """Whether the criteria select this interaction (ignores `enabled`)."""
        # A plain loop: `all(...)` would build a generator on every call.
        for check in self._checks:  # noqa: SIM110
            if not check(interaction):
                return False
        return True

    def keeps_sample(self, interaction_id: str) -> bool:
        """Whether `sample_rate` keeps this interaction id (the other criteria aside)."""
        if self.sample_bound is None:
            return True
        return sha256(self.sample_prefix + interaction_id.encode()).digest() < self.sample_bound


def _sample_bound(rate: float | None) -> bytes | None:
    """4 bytes B with: sha256 digest < B  <=>  int(first 8 hex digits) / 2**32 < rate.

    With h the first 4 bytes as an integer and x = rate * 2**32 (exact: a power-of-two
    scaling), h / 2**32 < rate <=> h < x <=> h < ceil(x), since h is an integer. Comparing the
    digest with ceil(x) as 4 big-endian bytes compares h with ceil(x), and a digest whose first
    4 bytes equal B is longer, hence not below it. Bytes comparison spares the int conversion.
    """
    if rate is None:
        return None
    bound = math.ceil(rate * _TWO_POW_32)
    if bound >= 2**32:  # every h is below: keep everything, no hash needed
        return None
    return bound.to_bytes(4, "big")


def _names(values: Iterable[str] | None) -> frozenset[str] | None:
    names = frozenset(values or ())
    return names or None


def _bounds(lower: float | None, upper: float | None) -> tuple[float, float]:
    return (-_INF if lower is None else lower, _INF if upper is None else upper)


def _category_rule(rule: Any) -> CategoryRule | None:
    if rule is None:
        return None
    compiled = CategoryRule(any=_names(rule.any), all=_names(rule.all), none=_names(rule.none))
    if compiled.any is None and compiled.all is None and compiled.none is None:
        return None
    return compiled


def _time_rule(criteria: Criteria) -> TimeRule | None:
    days = _names_int(criteria.days_of_week)
    window = None
    if criteria.time_of_day is not None:
        window = (
            time_of_day_seconds(criteria.time_of_day.from_) * _MICROS_PER_SECOND,
            time_of_day_seconds(criteria.time_of_day.to) * _MICROS_PER_SECOND,
        )
    if criteria.date_from is None and criteria.date_to is None and days is None and window is None:
        return None
    return TimeRule(
        zone=ZoneInfo(criteria.timezone),
        date_from=criteria.date_from,
        date_to=criteria.date_to,
        days=days,
        window=window,
    )


def _names_int(values: Iterable[int] | None) -> frozenset[int] | None:
    days = frozenset(values or ())
    return days or None


def compile_trigger(
    trigger_id: UUID,
    criteria: Criteria,
    *,
    name: str = "",
    enabled: bool = True,
    position: int = 0,
) -> CompiledTrigger:
    """Compile validated criteria once; evaluate the result any number of times."""
    sample_rate = criteria.sample_rate
    scores = tuple(
        (score, *_bounds(bounds.min, bounds.max))
        for score, bounds in (criteria.scores or {}).items()
    )
    metadata = tuple(
        (key, frozenset(values)) for key, values in (criteria.metadata or {}).items() if values
    )
    parts: dict[str, Any] = {
        "channels": _names(criteria.channels),
        "directions": _names(criteria.directions),
        "countries": _names(criteria.countries),
        "languages": _names(criteria.languages),
        "numbers_dialed": _names(criteria.numbers_dialed),
        "agents": _names(criteria.agents),
        "customers": _names(criteria.customers),
        "duration": (
            None
            if criteria.duration_seconds is None
            else _bounds(criteria.duration_seconds.min, criteria.duration_seconds.max)
        ),
        "talk_time": (
            None
            if criteria.talk_time_seconds is None
            else _bounds(criteria.talk_time_seconds.min, criteria.talk_time_seconds.max)
        ),
        "teams": _names(criteria.teams),
        "categories": _category_rule(criteria.categories),
        "category_groups": _category_rule(criteria.category_groups),
        "scores": scores,
        "metadata": metadata,
        "time": _time_rule(criteria),
        # A rate of 1 keeps everything: no hash needed.
        "sample_bound": _sample_bound(sample_rate),
        "sample_prefix": f"{trigger_id}:".encode(),
    }
    return CompiledTrigger(
        id=trigger_id,
        criteria=criteria,
        name=name,
        enabled=enabled,
        position=position,
        _checks=_reference_checks(parts),
        **parts,
    )


def _reference_checks(parts: dict[str, Any]) -> tuple[Check, ...]:
    """One small predicate per constrained criterion, cheapest first."""
    checks: list[Check] = []

    def member(values: frozenset[str] | None, read: Callable[[Interaction], Any]) -> None:
        if values is not None:
            checks.append(lambda interaction: read(interaction) in values)

    def within(bounds: tuple[float, float] | None, read: Callable[[Interaction], Any]) -> None:
        if bounds is not None:
            lower, upper = bounds

            def check(interaction: Interaction) -> bool:
                value = read(interaction)
                return value is not None and lower <= value <= upper

            checks.append(check)

    member(parts["channels"], lambda interaction: interaction.channel)
    member(parts["directions"], lambda interaction: interaction.direction)
    member(parts["countries"], lambda interaction: interaction.country)
    member(parts["languages"], lambda interaction: interaction.language)
    member(parts["numbers_dialed"], lambda interaction: interaction.number_dialed)
    member(parts["agents"], agent_id)
    member(parts["customers"], customer_id)
    within(parts["duration"], lambda interaction: interaction.duration_seconds)
    within(parts["talk_time"], lambda interaction: interaction.talk_time_seconds)
    teams: frozenset[str] | None = parts["teams"]
    if teams is not None:
        checks.append(
            lambda interaction: any(group.name in teams for group in interaction.call_groups)
        )
    categories: CategoryRule | None = parts["categories"]
    if categories is not None:
        checks.append(lambda interaction: categories.accepts(interaction.category_names))
    groups: CategoryRule | None = parts["category_groups"]
    if groups is not None:
        checks.append(lambda interaction: groups.accepts(_occurred_groups(interaction)))
    for score, lower, upper in parts["scores"]:
        within((lower, upper), _score_reader(score))
    for key, values in parts["metadata"]:
        checks.append(_metadata_check(key, values))
    time: TimeRule | None = parts["time"]
    if time is not None:
        checks.append(time.accepts)
    bound: bytes | None = parts["sample_bound"]
    if bound is not None:
        prefix: bytes = parts["sample_prefix"]
        checks.append(lambda interaction: sha256(prefix + interaction.id.encode()).digest() < bound)
    return tuple(checks)


def _score_reader(score: str) -> Callable[[Interaction], float | None]:
    return lambda interaction: interaction.score(score)


def _metadata_check(key: str, values: frozenset[str]) -> Check:
    return lambda interaction: metadata_text(interaction.metadata.get(key)) in values


def agent_id(interaction: Interaction) -> str | None:
    agent = interaction.agent
    return None if agent is None else agent.id


def customer_id(interaction: Interaction) -> str | None:
    customer = interaction.customer
    return None if customer is None else customer.id


def _occurred_groups(interaction: Interaction) -> frozenset[str]:
    return frozenset(
        group
        for category in interaction.categories
        if category.occurrences
        for group in category.groups
    )
