"""The value rules of design §4, one function each: called by the generated encoder, and the
reference for each rule (see `service.data_fields.encoding`)."""

import bisect
import functools
import math
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, timezone
from decimal import Context, Decimal
from typing import Any
from urllib.parse import quote

from pydantic_core import TzInfo

from service.catalog.schemas import Score
from service.interactions.schemas import CallGroup, Interaction, OccurredCategory

_TWO_DIGITS = tuple(f"{number:02d}" for number in range(60))
_TENTHS = tuple(f"{tenths // 10}.{tenths % 10}" for tenths in range(101))
# Enough digits for the exact difference of any two doubles (1e308 - 5e-324 has ~650), so the
# near-tie path never rounds before the final half-up.
_EXACT = Context(prec=1200)
_SAFE_ID = re.compile(r"[A-Za-z0-9._~-]+")


# Zones with one fixed offset, whose `utcoffset` ignores its argument: pydantic's (every
# parsed interaction's times carry one) and the standard library's. Asking such a zone directly
# costs a quarter of `moment.utcoffset()`, which goes through datetime's generic tzinfo call.
_FIXED_OFFSET_ZONES: frozenset[type] = frozenset({TzInfo, timezone})
_DAY_TEXTS: dict[int, str] = {}  # proleptic ordinal -> "YYYY-MM-DD"
_MAX_DAY_TEXTS = 4096


def day_text(moment: date) -> str:
    """`YYYY-MM-DD` of the (wall) date, as `date.isoformat()` spells it.

    Remembered per day: a delivery's interactions start on a handful of recent days, so this
    is nearly always one dictionary lookup instead of building and formatting a date.
    """
    ordinal = moment.toordinal()
    text = _DAY_TEXTS.get(ordinal)
    if text is None:
        if len(_DAY_TEXTS) >= _MAX_DAY_TEXTS:  # bounded: replaying years of history
            _DAY_TEXTS.clear()
        text = _DAY_TEXTS[ordinal] = date.fromordinal(ordinal).isoformat()
    return text


def utc_text(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:MM:SSZ` in UTC, fractions dropped.

    Hand-formatted: `strftime` and `isoformat` cost two to three times as much, and encoding
    formats two of these per response.
    """
    zone = moment.tzinfo
    fixed = zone.__class__ in _FIXED_OFFSET_ZONES  # so `zone` is not None either
    offset = zone.utcoffset(None) if fixed else moment.utcoffset()  # type: ignore[union-attr]
    if offset:
        moment = moment - offset  # the UTC wall time (the tzinfo left on it is not used)
    return (
        # `day_text`, its usual path inlined: a call costs a quarter of this function.
        f"{_DAY_TEXTS.get(moment.toordinal()) or day_text(moment)}T"
        f"{_TWO_DIGITS[moment.hour]}:{_TWO_DIGITS[moment.minute]}:{_TWO_DIGITS[moment.second]}Z"
    )


def clock_text(moment: datetime) -> str:
    """`HH:MM:SS` of a datetime in its own offset."""
    return f"{_TWO_DIGITS[moment.hour]}:{_TWO_DIGITS[moment.minute]}:{_TWO_DIGITS[moment.second]}"


def whole_seconds(seconds: float) -> int:
    """Rounded half up (durations are never negative). `x - int(x)` is exact for floats."""
    whole = int(seconds)
    return whole + 1 if seconds - whole >= 0.5 else whole


def range_encoder(minimum: float, maximum: float) -> Callable[[float], str]:
    """`(value - min) / (max - min) * 10`, half up to one decimal, clamped: `"0.0"` to `"10.0"`.

    The rule is defined on the numbers as written (Decimal of their shortest repr: 4.55 is
    4.55, not 4.5499999...). Floats give the same answer except within rounding error of a half
    tenth, so they are used everywhere else and Decimal decides the near-ties.
    """
    scale = 100.0 / (maximum - minimum)  # tenths per unit
    # Bound on |float result - decimal result| in tenths, with a wide margin.
    tolerance = 1e-9 + 1e-13 * (abs(minimum) + abs(maximum)) * scale
    low = Decimal(repr(minimum))
    span = _EXACT.subtract(Decimal(repr(maximum)), low)

    limit = _EXACT.multiply(span, 100)

    @functools.lru_cache(maxsize=1024)  # scores repeat, and a tie is 1 in 10 two-decimal scores
    def exact(value: float) -> str:
        # round_half_up(100 * d / span) by integer division: exact, with no long quotient.
        numerator = _EXACT.multiply(_EXACT.subtract(Decimal(repr(value)), low), 100)
        if numerator <= 0:
            return _TENTHS[0]
        if numerator >= limit:
            return _TENTHS[100]
        quotient, remainder = _EXACT.divmod(numerator, span)
        return _TENTHS[int(quotient) + (_EXACT.multiply(remainder, 2) >= span)]

    if not math.isfinite(scale):  # a span too small for floats: decide every value exactly
        return exact

    def encode(value: float) -> str:
        tenths = (value - minimum) * scale
        if tenths <= 0.0:
            return _TENTHS[0]
        if tenths >= 100.0:
            return _TENTHS[100]
        whole = int(tenths)
        fraction = tenths - whole
        if abs(fraction - 0.5) <= tolerance:
            return exact(value)
        return _TENTHS[whole + 1 if fraction > 0.5 else whole]

    return encode


def band_boundaries(score: Score) -> list[float]:
    """The inner band boundaries: `bisect_right(boundaries, value)` is the index of the band
    holding `value` (`[min, max)`, the last band also holding its max), and values below or
    above the scale land in the first or last band without a separate clamp."""
    return [band.min for band in score.ranges[1:]]


def band_index(score: Score, value: float) -> int:
    return bisect.bisect_right(band_boundaries(score), value)


def join_names(names: Sequence[str]) -> str:
    """Names joined by ", ", each once, commas inside names replaced by ";" (Qualtrics splits
    multi-value text sets on commas)."""
    if len(names) == 1:
        name = names[0]
        return name.replace(",", ";") if "," in name else name
    joined = ", ".join(names)
    # The usual case costs two C calls: no comma inside a name, no name twice.
    if joined.count(",") == len(names) - 1 and len(set(names)) == len(names):
        return joined
    return ", ".join(dict.fromkeys(name.replace(",", ";") for name in names))


def call_group_names(groups: Sequence[CallGroup], group_type: str | None = None) -> str:
    """The joined names of the call groups (of one type), in payload order."""
    names = []
    for group in groups:  # a loop: cheaper than a comprehension for the usual one or two
        if group_type is None or group.type == group_type:
            names.append(group.name)
    return join_names(names) if names else ""


def metadata_text(value: str | int | float | bool) -> str:
    """A metadata value as text: trimmed strings, JSON spellings of numbers and booleans."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def link(interaction: Interaction, creovai_app_url: str) -> str:
    url = interaction.url.strip() if interaction.url else ""
    if url:
        return url
    identifier = interaction.id
    if not _SAFE_ID.fullmatch(identifier):
        identifier = quote(identifier, safe="")
    return f"{creovai_app_url.rstrip('/')}/interactions/{identifier}"


def names_group(grouped: Sequence[OccurredCategory], group: str) -> bool:
    """Whether a category that occurred names `group` among its groups (the payload's view);
    `grouped` holds the categories that occurred and name any group."""
    for category in grouped:  # noqa: SIM110 (faster than any() over a generator)
        if group in category.groups:
            return True
    return False


def group_members_encoder(
    group: str,
    members: Sequence[str],
    choice: Callable[[str], int | str | None] | None = None,
    *,
    join: bool = False,
) -> Callable[[Sequence[OccurredCategory], set[str]], Any]:
    """`(grouped, occurred) →` the group's categories that occurred: catalogue members in
    catalogue order, then categories the interaction itself places in the group, in payload
    order (`grouped`: the categories that occurred and name any group, see `occurrences`).
    Mapped to their choice ids with `choice` (those without one dropped), or joined with
    `join`. One closure, because it runs per interaction."""
    member_set = frozenset(members)
    position = {member: index for index, member in enumerate(members)}
    # The catalogue lists a member once, so the names found are distinct, and unless one holds
    # a comma, `join_names` would return their plain join: skip its checks for repeats.
    distinct = len(member_set) == len(members)

    def found(grouped: Sequence[OccurredCategory], occurred: set[str]) -> Any:
        if len(occurred) * 4 < len(members):  # a large group, few categories: sort those
            names = sorted(
                (name for name in occurred if name in member_set), key=position.__getitem__
            )
        else:
            names = []
            for member in members:
                if member in occurred:
                    names.append(member)
        for category in grouped:
            if (
                group in category.groups
                and category.name not in member_set
                and category.name not in names
            ):
                names.append(category.name)
        if choice is not None:
            answers = []
            for name in names:  # a loop: cheaper than a comprehension for a few names
                answer = choice(name)
                if answer is not None:
                    answers.append(answer)
            return answers
        if join:
            if not names:
                return None
            text = ", ".join(names)
            if distinct and text.count(",") == len(names) - 1:
                return text
            return join_names(names)
        return names

    return found


def occurrences(categories: Sequence[OccurredCategory]) -> tuple[set[str], list[OccurredCategory]]:
    """The names of the categories that occurred, and those of them that name any group."""
    occurred: set[str] = set()
    grouped: list[OccurredCategory] = []
    for category in categories:
        if category.occurrences:
            occurred.add(category.name)
            if category.groups:
                grouped.append(category)
    return occurred, grouped


# ---------------------------------------------------------------------------------------------
# The plan.
