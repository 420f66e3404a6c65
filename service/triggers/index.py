"""`TriggerSet`: an integration's compiled triggers, indexed to find the first match fast.

Each enabled trigger is one bit of an int, in position order. For every kind of criterion some
trigger uses, an index answers "which triggers accept this interaction's value" as a mask, in a
dictionary lookup or two bisections; the masks are ANDed, and the lowest surviving bit wins.
A kind that none of the triggers still in uses is skipped. The cost grows with the kinds of
criteria in use and the size of the interaction, hardly with the number of triggers. The one
per-trigger cost left is `sample_rate`: one SHA-256 (about 0.3 µs) for each candidate that
reaches its sample, in position order, until one is kept.

The indexes read the interaction through `InteractionFacts` (the occurred category names, the
scores by name, the start in a zone...). `first_match` builds them for one call when given an
interaction; planning builds them once per interaction and passes them to every integration's
set, so each fact is derived once however many integrations there are.

`CompiledTrigger.matches` is the reference; the property tests check that both agree.
"""

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from datetime import date
from hashlib import sha256
from operator import attrgetter
from typing import TYPE_CHECKING, Any, overload

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
from service.triggers.facts import InteractionFacts
from service.triggers.schemas import metadata_text

if TYPE_CHECKING:
    from hashlib import _Hash

# A filter reads the facts it needs from the shared `InteractionFacts`: computed once per
# interaction, however many trigger sets (integrations) look at it.
MaskFilter = Callable[[InteractionFacts], int]

_UNSEEN: Any = object()  # not in a facts cache yet (None is a value there)


def _range_index(
    bits: Sequence[int], bounds: Sequence[tuple[Any, Any] | None]
) -> Callable[[Any], int]:
    """`value →` the mask of triggers whose inclusive [lower, upper] bounds hold it (None: the
    triggers without bounds), by two bisections."""
    free = 0  # triggers without this constraint: they accept anything
    bounded: list[tuple[int, Any, Any]] = []
    for bit, bound in zip(bits, bounds, strict=True):
        if bound is None:
            free |= bit
        else:
            bounded.append((bit, *bound))
    by_low = sorted(bounded, key=lambda item: item[1])
    lows = [low for _, low, _ in by_low]
    prefix = [0]
    for bit, _, _ in by_low:
        prefix.append(prefix[-1] | bit)
    by_high = sorted(bounded, key=lambda item: item[2])
    highs = [high for _, _, high in by_high]
    suffix = [0] * (len(by_high) + 1)
    for index in range(len(by_high) - 1, -1, -1):
        suffix[index] = suffix[index + 1] | by_high[index][0]

    def accepting(value: Any) -> int:
        if value is None:
            return free
        # Bounds are sorted: the first k lows are <= value; the highs from k' on are >= value.
        return free | (prefix[bisect_right(lows, value)] & suffix[bisect_left(highs, value)])

    return accepting


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
    return lambda facts: free | get(read(facts.interaction), 0)


def _range_filter(
    bits: Sequence[int],
    bounds: Sequence[tuple[float, float] | None],
    read: Callable[[Interaction], Any],
) -> MaskFilter | None:
    if all(bound is None for bound in bounds):
        return None
    accepting = _range_index(bits, bounds)
    return lambda facts: accepting(read(facts.interaction))


def _teams_filter(bits: Sequence[int], triggers: Sequence[CompiledTrigger]) -> MaskFilter | None:
    built = _value_index(bits, [trigger.teams for trigger in triggers])
    if built is None:
        return None
    free, index = built
    get = index.get

    def accepting(facts: InteractionFacts) -> int:
        mask = free
        for name in facts.team_names():
            mask |= get(name, 0)
        return mask

    return accepting


def _name_rules(
    everyone: int, bits: Sequence[int], rules: Sequence[CategoryRule | None]
) -> Callable[[AbstractSet[str]], int] | None:
    """`names →` the mask of triggers whose any / all / none rules these names satisfy."""
    if all(rule is None for rule in rules):
        return None
    any_index = _value_index(bits, [rule.any if rule else None for rule in rules])
    none_index = _value_index(bits, [rule.none if rule else None for rule in rules])
    all_index = _value_index(bits, [rule.all if rule else None for rule in rules])
    any_free, any_masks = any_index if any_index else (everyone, {})
    none_masks = none_index[1] if none_index else {}
    all_masks = all_index[1] if all_index else {}
    # Set operations in C find the few listed names that occurred (or, for `all`, did not),
    # instead of a dictionary lookup per name in Python.
    any_names, none_names, all_names = map(frozenset, (any_masks, none_masks, all_masks))

    def accepting(names: AbstractSet[str]) -> int:
        mask = any_free
        if any_names:
            for name in any_names.intersection(names):
                mask |= any_masks[name]
        failed = 0
        if none_names:
            for name in none_names.intersection(names):
                failed |= none_masks[name]
        if all_names:
            for name in all_names.difference(names):
                failed |= all_masks[name]
        return mask & ~failed

    return accepting


def _occurrence_filter(
    everyone: int, bits: Sequence[int], triggers: Sequence[CompiledTrigger]
) -> MaskFilter | None:
    """`categories` and `category_groups`, over one pass through the interaction's categories."""
    by_name = _name_rules(everyone, bits, [trigger.categories for trigger in triggers])
    by_group = _name_rules(everyone, bits, [trigger.category_groups for trigger in triggers])
    if by_name is None:
        if by_group is None:
            return None
        groups_only = by_group  # (a name the closure can rely on, for the type checker)
        return lambda facts: groups_only(facts.group_names())
    names_only = by_name
    if by_group is None:
        return lambda facts: names_only(facts.category_names())
    groups_too = by_group

    def accepting(facts: InteractionFacts) -> int:
        names, groups = facts.occurred()  # one pass over the categories for both
        return names_only(names) & groups_too(groups)

    return accepting


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
        per_score.append((score, _range_index(bits, bounds)))

    def accepting(facts: InteractionFacts) -> int:
        values = facts.scores()  # the first of a repeated name counts
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

    def accepting(facts: InteractionFacts) -> int:
        texts = facts.metadata_texts  # shared: each field's text is computed once
        mask = everyone
        for key, free, index in per_key:
            text = texts.get(key, _UNSEEN)
            if text is _UNSEEN:
                text = texts[key] = metadata_text(facts.interaction.metadata.get(key))
            mask &= free if text is None else free | index.get(text, 0)
        return mask

    return accepting


def _time_filters(
    everyone: int, bits: Sequence[int], triggers: Sequence[CompiledTrigger]
) -> list[tuple[int, MaskFilter]]:
    """One filter per zone (constrained: that zone's triggers): one conversion each."""
    zones: dict[str, list[tuple[int, TimeRule]]] = {}
    for bit, trigger in zip(bits, triggers, strict=True):
        if trigger.time is not None:
            zones.setdefault(trigger.time.zone.key, []).append((bit, trigger.time))
    return [
        (sum(bit for bit, _ in rules), _zone_filter(everyone, rules)) for rules in zones.values()
    ]


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

    def accepting(facts: InteractionFacts) -> int:
        # Shared: the start is converted to each zone (and read as a time of day) once.
        local = facts.local_starts.get(zone)
        if local is None:
            local = facts.local_starts[zone] = facts.interaction.started_at.astimezone(zone)
        mask = everyone
        if dates is not None:
            mask &= others | dates(local.date())
        if by_weekday is not None:
            mask &= others | by_weekday[local.isoweekday()]
        if windows is not None:
            free, points, segments = windows
            micros = facts.local_micros.get(zone)
            if micros is None:
                micros = facts.local_micros[zone] = micros_of_day(local)
            mask &= others | free | segments[bisect_right(points, micros) - 1]
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


def _bits_where(bits: Sequence[int], flags: Iterable[object]) -> int:
    """The mask of the triggers whose flag is set (truthy)."""
    return sum(bit for bit, flag in zip(bits, flags, strict=True) if flag)


def _mask_filters(triggers: Sequence[CompiledTrigger]) -> tuple[tuple[int, MaskFilter], ...]:
    """(the triggers a filter can reject, the filter) for every kind of criterion in use.

    Every filter accepts all the triggers it does not constrain, so one whose constrained
    triggers are all out already cannot change the outcome and is skipped.
    """
    bits = [1 << index for index in range(len(triggers))]
    everyone = (1 << len(triggers)) - 1

    def which(attribute: str) -> list[Any]:
        return [getattr(trigger, attribute) for trigger in triggers]

    def values(attribute: str, read: Callable[[Interaction], Any]) -> tuple[int, MaskFilter | None]:
        sets = which(attribute)
        constrained = _bits_where(bits, (found is not None for found in sets))
        return constrained, _value_filter(bits, sets, read)

    def ranges(attribute: str, read: Callable[[Interaction], Any]) -> tuple[int, MaskFilter | None]:
        bounds = which(attribute)
        constrained = _bits_where(bits, (bound is not None for bound in bounds))
        return constrained, _range_filter(bits, bounds, read)

    occurrences = _bits_where(
        bits,
        (t.categories is not None or t.category_groups is not None for t in triggers),
    )
    candidates: list[tuple[int, MaskFilter | None]] = [
        # Cheapest and most selective first: one dictionary lookup each.
        values("channels", attrgetter("channel")),
        values("directions", attrgetter("direction")),
        values("countries", attrgetter("country")),
        values("languages", attrgetter("language")),
        values("numbers_dialed", attrgetter("number_dialed")),
        values("agents", agent_id),
        values("customers", customer_id),
        ranges("duration", attrgetter("duration_seconds")),
        ranges("talk_time", attrgetter("talk_time_seconds")),
        (_bits_where(bits, which("teams")), _teams_filter(bits, triggers)),
        (occurrences, _occurrence_filter(everyone, bits, triggers)),
        (_bits_where(bits, which("scores")), _scores_filter(everyone, bits, triggers)),
        (_bits_where(bits, which("metadata")), _metadata_filter(everyone, bits, triggers)),
        *_time_filters(everyone, bits, triggers),
    ]
    return tuple(
        (constrained, accepting) for constrained, accepting in candidates if accepting is not None
    )


def _kept(sample: tuple["_Hash", bytes], identifier: bytes) -> bool:
    """Whether a trigger's sample keeps the interaction: `sample` holds the hash of the
    trigger's prefix (copied, so it is hashed once per trigger) and its bound (see
    `compiled._sample_bound`)."""
    digest = sample[0].copy()
    digest.update(identifier)
    return digest.digest() < sample[1]


class TriggerSet(Sequence[CompiledTrigger]):
    """An integration's compiled triggers in position order, indexed for fast evaluation.

    Immutable: build a new one when the triggers change.
    """

    __slots__ = ("_enabled", "_everyone", "_filters", "_samples", "_triggers")

    def __init__(self, triggers: Iterable[CompiledTrigger]) -> None:
        self._triggers = tuple(triggers)
        self._enabled = tuple(trigger for trigger in self._triggers if trigger.enabled)
        self._filters = _mask_filters(self._enabled)
        # Each sampled trigger's prefix, hashed once: `_kept` finishes a copy with the id.
        self._samples = tuple(
            None
            if trigger.sample_bound is None
            else (sha256(trigger.sample_prefix), trigger.sample_bound)
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

    def _candidates(self, facts: InteractionFacts) -> int:
        alive = self._everyone
        for constrained, accepting in self._filters:
            if alive & constrained:  # else every trigger still in is free of this criterion
                alive &= accepting(facts)
                if not alive:
                    break
        return alive

    def first_match(self, interaction: Interaction | InteractionFacts) -> CompiledTrigger | None:
        """The first enabled trigger, by position, whose criteria select the interaction.

        Pass the interaction's `InteractionFacts` when several sets are asked about the same
        interaction (planning): each fact is then derived once for all of them.
        """
        facts = (
            interaction
            if isinstance(interaction, InteractionFacts)
            else InteractionFacts(interaction)
        )
        alive = self._candidates(facts)
        samples = self._samples
        while alive:
            lowest = alive & -alive
            index = lowest.bit_length() - 1
            sample = samples[index]
            if sample is None or _kept(sample, facts.identifier()):
                return self._enabled[index]
            alive ^= lowest
        return None

    def all_matches(self, interaction: Interaction | InteractionFacts) -> list[CompiledTrigger]:
        """Every enabled trigger that selects the interaction, in position order (dry runs)."""
        facts = (
            interaction
            if isinstance(interaction, InteractionFacts)
            else InteractionFacts(interaction)
        )
        alive = self._candidates(facts)
        identifier = facts.identifier()
        found: list[CompiledTrigger] = []
        while alive:
            lowest = alive & -alive
            index = lowest.bit_length() - 1
            sample = self._samples[index]
            if sample is None or _kept(sample, identifier):
                found.append(self._enabled[index])
            alive ^= lowest
        return found
