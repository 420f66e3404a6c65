"""`TriggerSet`: an integration's compiled triggers, indexed to find the first match fast.

Each enabled trigger is one bit of an int, in position order. For every kind of criterion some
trigger uses, an index answers "which triggers accept this interaction's value" as a mask, in a
dictionary lookup or two bisections; the masks are ANDed, and the lowest surviving bit wins.
The cost grows with the kinds of criteria in use and the size of the interaction, hardly with
the number of triggers. The one per-trigger cost left is `sample_rate`: one SHA-256 (about
0.3 µs) for each candidate that reaches its sample, in position order, until one is kept.

`CompiledTrigger.matches` is the reference; the property tests check that both agree.
"""

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date
from hashlib import sha256
from operator import attrgetter
from typing import Any, overload

from service.interactions.schemas import Interaction
from service.triggers.compiled import (
    KEEP_NONE,
    CategoryRule,
    CompiledTrigger,
    TimeRule,
    agent_id,
    customer_id,
    in_window,
    micros_of_day,
)
from service.triggers.schemas import metadata_text

MaskFilter = Callable[[Interaction], int]


class _RangeIndex:
    """Which triggers' inclusive [lower, upper] bounds hold a value, by two bisections."""

    __slots__ = ("_free", "_highs", "_lows", "_prefix", "_suffix")

    def __init__(self, free: int, bounded: list[tuple[int, Any, Any]]) -> None:
        self._free = free  # triggers without this constraint: they accept anything
        by_low = sorted(bounded, key=lambda item: item[1])
        self._lows = [low for _, low, _ in by_low]
        self._prefix = [0]
        for bit, _, _ in by_low:
            self._prefix.append(self._prefix[-1] | bit)
        by_high = sorted(bounded, key=lambda item: item[2])
        self._highs = [high for _, _, high in by_high]
        suffix = [0] * (len(by_high) + 1)
        for index in range(len(by_high) - 1, -1, -1):
            suffix[index] = suffix[index + 1] | by_high[index][0]
        self._suffix = suffix

    def accepting(self, value: Any) -> int:
        if value is None:
            return self._free
        # Bounds are sorted: the first k lows are <= value; the highs from k' on are >= value.
        return self._free | (
            self._prefix[bisect_right(self._lows, value)]
            & self._suffix[bisect_left(self._highs, value)]
        )


def _value_index(
    bits: Sequence[int], sets: Sequence[frozenset[Any] | None]
) -> tuple[int, dict[Any, int]] | None:
    """(mask of unconstrained triggers, value → mask of triggers listing it), or None."""
    if all(values is None for values in sets):
        return None
    free = 0
    index: dict[Any, int] = {}
    for bit, values in zip(bits, sets, strict=True):
        if values is None:
            free |= bit
            continue
        for value in values:
            index[value] = index.get(value, 0) | bit
    return free, index


def _value_filter(
    bits: Sequence[int], sets: Sequence[frozenset[Any] | None], read: Callable[[Interaction], Any]
) -> MaskFilter | None:
    built = _value_index(bits, sets)
    if built is None:
        return None
    free, index = built
    get = index.get
    return lambda interaction: free | get(read(interaction), 0)


def _range_filter(
    bits: Sequence[int],
    bounds: Sequence[tuple[float, float] | None],
    read: Callable[[Interaction], Any],
) -> MaskFilter | None:
    if all(bound is None for bound in bounds):
        return None
    ranges = _range_index(bits, bounds)
    accepting = ranges.accepting
    return lambda interaction: accepting(read(interaction))


def _range_index(bits: Sequence[int], bounds: Sequence[tuple[Any, Any] | None]) -> _RangeIndex:
    free = 0
    bounded: list[tuple[int, Any, Any]] = []
    for bit, bound in zip(bits, bounds, strict=True):
        if bound is None:
            free |= bit
        else:
            bounded.append((bit, *bound))
    return _RangeIndex(free, bounded)


def _teams_filter(bits: Sequence[int], triggers: Sequence[CompiledTrigger]) -> MaskFilter | None:
    built = _value_index(bits, [trigger.teams for trigger in triggers])
    if built is None:
        return None
    free, index = built
    get = index.get

    def accepting(interaction: Interaction) -> int:
        mask = free
        for group in interaction.call_groups:
            mask |= get(group.name, 0)
        return mask

    return accepting


def _category_filter(
    everyone: int,
    bits: Sequence[int],
    rules: Sequence[CategoryRule | None],
    occurred: Callable[[Interaction], Iterable[str]],
) -> MaskFilter | None:
    if all(rule is None for rule in rules):
        return None
    any_index = _value_index(bits, [rule.any if rule else None for rule in rules])
    none_index = _value_index(bits, [rule.none if rule else None for rule in rules])
    all_index = _value_index(bits, [rule.all if rule else None for rule in rules])
    any_free, any_get = (any_index[0], any_index[1].get) if any_index else (everyone, None)
    none_get = none_index[1].get if none_index else None
    all_items = tuple(all_index[1].items()) if all_index else ()

    def accepting(interaction: Interaction) -> int:
        names = occurred(interaction)
        mask = any_free
        failed = 0
        for name in names:
            if any_get is not None:
                mask |= any_get(name, 0)
            if none_get is not None:
                failed |= none_get(name, 0)
        for name, listing in all_items:
            if name not in names:
                failed |= listing
        return mask & ~failed

    return accepting


def _occurred_category_names(interaction: Interaction) -> set[str]:
    return {category.name for category in interaction.categories if category.occurrences}


def _occurred_group_names(interaction: Interaction) -> set[str]:
    return {
        group
        for category in interaction.categories
        if category.occurrences
        for group in category.groups
    }


def _scores_filter(
    everyone: int, bits: Sequence[int], triggers: Sequence[CompiledTrigger]
) -> MaskFilter | None:
    names = sorted({score for trigger in triggers for score, _, _ in trigger.scores})
    if not names:
        return None
    per_score: list[tuple[str, Callable[[Any], int]]] = []
    for score in names:
        bounds: list[tuple[float, float] | None] = []
        for trigger in triggers:
            found = [(low, high) for name, low, high in trigger.scores if name == score]
            bounds.append(found[0] if found else None)
        per_score.append((score, _range_index(bits, bounds).accepting))

    def accepting(interaction: Interaction) -> int:
        values: dict[str, float] = {}
        for item in interaction.scores:
            values.setdefault(item.name, item.value)  # the first of a repeated name counts
        mask = everyone
        for score, accepts in per_score:
            mask &= accepts(values.get(score))
        return mask

    return accepting


def _metadata_filter(
    everyone: int, bits: Sequence[int], triggers: Sequence[CompiledTrigger]
) -> MaskFilter | None:
    keys = sorted({key for trigger in triggers for key, _ in trigger.metadata})
    if not keys:
        return None
    per_key: list[tuple[str, int, dict[str, int]]] = []
    for key in keys:
        sets = [dict(trigger.metadata).get(key) for trigger in triggers]
        built = _value_index(bits, sets)
        assert built is not None  # noqa: S101 (some trigger lists this key)
        per_key.append((key, *built))

    def accepting(interaction: Interaction) -> int:
        metadata = interaction.metadata
        mask = everyone
        for key, free, index in per_key:
            text = metadata_text(metadata.get(key))
            mask &= free if text is None else free | index.get(text, 0)
        return mask

    return accepting


def _time_filters(
    everyone: int, bits: Sequence[int], triggers: Sequence[CompiledTrigger]
) -> list[MaskFilter]:
    zones: dict[str, list[tuple[int, TimeRule]]] = {}
    for bit, trigger in zip(bits, triggers, strict=True):
        if trigger.time is not None:
            zones.setdefault(trigger.time.zone.key, []).append((bit, trigger.time))
    return [_zone_filter(everyone, rules) for rules in zones.values()]


def _zone_filter(everyone: int, rules: list[tuple[int, TimeRule]]) -> MaskFilter:
    zone = rules[0][1].zone
    rule_bits = [bit for bit, _ in rules]
    others = everyone & ~sum(rule_bits)
    dated = [
        None
        if rule.date_from is None and rule.date_to is None
        else (rule.date_from or date.min, rule.date_to or date.max)
        for _, rule in rules
    ]
    dates = None if all(bound is None for bound in dated) else _range_index(rule_bits, dated)
    weekdays = _value_index(rule_bits, [rule.days for _, rule in rules])
    by_weekday = (
        None
        if weekdays is None
        else [weekdays[0] | weekdays[1].get(day, 0) for day in range(8)]  # index 1-7
    )
    windows = _window_index(rules)

    def accepting(interaction: Interaction) -> int:
        local = interaction.started_at.astimezone(zone)
        mask = everyone
        if dates is not None:
            mask &= others | dates.accepting(local.date())
        if by_weekday is not None:
            mask &= others | by_weekday[local.isoweekday()]
        if windows is not None:
            free, points, segments = windows
            mask &= others | free | segments[bisect_right(points, micros_of_day(local)) - 1]
        return mask

    return accepting


def _window_index(rules: list[tuple[int, TimeRule]]) -> tuple[int, list[int], list[int]] | None:
    """(rules without a window, breakpoints, mask of the windows holding each segment).

    Every window starts and ends at a breakpoint, so which windows hold a time of day is the
    same from one breakpoint to the next: one bisection finds the segment and its mask.
    """
    windows = [(bit, rule.window) for bit, rule in rules if rule.window is not None]
    if not windows:
        return None
    free = sum(bit for bit, rule in rules if rule.window is None)
    points = sorted({0, *(edge for _, window in windows for edge in window)})
    segments = [sum(bit for bit, window in windows if in_window(start, window)) for start in points]
    return free, points, segments


def _mask_filters(triggers: Sequence[CompiledTrigger]) -> tuple[MaskFilter, ...]:
    bits = [1 << index for index in range(len(triggers))]
    everyone = (1 << len(triggers)) - 1

    def values(attribute: str, read: Callable[[Interaction], Any]) -> MaskFilter | None:
        return _value_filter(bits, [getattr(trigger, attribute) for trigger in triggers], read)

    candidates: list[MaskFilter | None] = [
        # Cheapest and most selective first: one dictionary lookup each.
        values("channels", attrgetter("channel")),
        values("directions", attrgetter("direction")),
        values("countries", attrgetter("country")),
        values("languages", attrgetter("language")),
        values("numbers_dialed", attrgetter("number_dialed")),
        values("agents", agent_id),
        values("customers", customer_id),
        _range_filter(
            bits, [trigger.duration for trigger in triggers], attrgetter("duration_seconds")
        ),
        _range_filter(
            bits, [trigger.talk_time for trigger in triggers], attrgetter("talk_time_seconds")
        ),
        _teams_filter(bits, triggers),
        _category_filter(
            everyone,
            bits,
            [trigger.categories for trigger in triggers],
            _occurred_category_names,
        ),
        _category_filter(
            everyone,
            bits,
            [trigger.category_groups for trigger in triggers],
            _occurred_group_names,
        ),
        _scores_filter(everyone, bits, triggers),
        _metadata_filter(everyone, bits, triggers),
        *_time_filters(everyone, bits, triggers),
    ]
    return tuple(candidate for candidate in candidates if candidate is not None)


class TriggerSet(Sequence[CompiledTrigger]):
    """An integration's compiled triggers in position order, indexed for fast evaluation.

    Immutable: build a new one when the triggers change.
    """

    __slots__ = ("_enabled", "_everyone", "_filters", "_samples", "_triggers")

    def __init__(self, triggers: Iterable[CompiledTrigger]) -> None:
        self._triggers = tuple(triggers)
        self._enabled = tuple(trigger for trigger in self._triggers if trigger.enabled)
        self._filters = _mask_filters(self._enabled)
        self._samples = tuple(
            None if trigger.sample_bound is None else (trigger.sample_prefix, trigger.sample_bound)
            for trigger in self._enabled
        )
        # A sample rate of 0 keeps nothing: such triggers are never candidates.
        self._everyone = sum(
            1 << index
            for index, trigger in enumerate(self._enabled)
            if trigger.sample_bound != KEEP_NONE
        )

    @overload
    def __getitem__(self, index: int) -> CompiledTrigger: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[CompiledTrigger]: ...

    def __getitem__(self, index: int | slice) -> CompiledTrigger | Sequence[CompiledTrigger]:
        return self._triggers[index]

    def __len__(self) -> int:
        return len(self._triggers)

    def __iter__(self) -> Iterator[CompiledTrigger]:
        return iter(self._triggers)

    def __repr__(self) -> str:
        return f"TriggerSet({len(self._triggers)} triggers, {len(self._enabled)} enabled)"

    @property
    def enabled(self) -> tuple[CompiledTrigger, ...]:
        return self._enabled

    def _candidates(self, interaction: Interaction) -> int:
        alive = self._everyone
        for accepting in self._filters:
            if not alive:
                break
            alive &= accepting(interaction)
        return alive

    def first_match(self, interaction: Interaction) -> CompiledTrigger | None:
        """The first enabled trigger, by position, whose criteria select the interaction."""
        alive = self._candidates(interaction)
        samples = self._samples
        identifier: bytes | None = None
        while alive:
            lowest = alive & -alive
            index = lowest.bit_length() - 1
            sample = samples[index]
            if sample is None:
                return self._enabled[index]
            if identifier is None:
                identifier = interaction.id.encode()
            if sha256(sample[0] + identifier).digest() < sample[1]:
                return self._enabled[index]
            alive ^= lowest
        return None

    def all_matches(self, interaction: Interaction) -> list[CompiledTrigger]:
        """Every enabled trigger that selects the interaction, in position order (dry runs)."""
        alive = self._candidates(interaction)
        identifier = interaction.id.encode()
        found: list[CompiledTrigger] = []
        while alive:
            lowest = alive & -alive
            index = lowest.bit_length() - 1
            sample = self._samples[index]
            if sample is None or sha256(sample[0] + identifier).digest() < sample[1]:
                found.append(self._enabled[index])
            alive ^= lowest
        return found
