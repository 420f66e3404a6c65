"""`time_ordered_uuids`: version-7 UUIDs in bulk (RFC 9562 §5.7)."""

import time
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.kit.ids import time_ordered_uuids


@pytest.mark.parametrize("count", [1, 2, 17])
def test_count_distinct_version_7_uuids(count: int) -> None:
    made = time_ordered_uuids(count)

    assert len(made) == count
    assert len(set(made)) == count
    assert all(isinstance(one, uuid.UUID) for one in made)
    assert all(one.version == 7 for one in made)
    assert all(one.variant == uuid.RFC_4122 for one in made)


def test_none_for_zero() -> None:
    assert time_ordered_uuids(0) == []


def test_the_first_48_bits_are_the_unix_time_in_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    made = time_ordered_uuids(5)
    after = time.time_ns() // 1_000_000

    assert {one.int >> 80 for one in made} <= set(range(before, after + 1))
    assert len({one.int >> 80 for one in made}) == 1  # one stamp per call


@given(st.integers(min_value=0, max_value=2**48 - 1), st.integers(min_value=1, max_value=50))
def test_the_stamp_and_the_fixed_bits(now_ms: int, count: int) -> None:
    for one in time_ordered_uuids(count, now_ms=now_ms):
        assert one.int >> 80 == now_ms
        assert (one.version, one.variant) == (7, uuid.RFC_4122)


def test_later_calls_sort_after_earlier_ones() -> None:
    """What the indexes gain: a later millisecond's ids come after every earlier one's."""
    earlier = time_ordered_uuids(1000, now_ms=1_800_000_000_000)
    later = time_ordered_uuids(1000, now_ms=1_800_000_000_001)

    assert max(earlier) < min(later)
    assert max(one.bytes for one in earlier) < min(one.bytes for one in later)  # as stored


def test_large_counts_are_distinct_with_74_random_bits() -> None:
    made = time_ordered_uuids(100_000, now_ms=1_800_000_000_000)

    assert len(set(made)) == len(made) == 100_000
    random_bits = [one.int & ((1 << 80) - 1) & ~((0xF << 76) | (0x3 << 62)) for one in made]
    assert len(set(random_bits)) == len(made)
    # Every one of the 74 free bits varies across the ids (none is stuck at 0 or 1).
    free = ((1 << 80) - 1) & ~((0xF << 76) | (0x3 << 62))
    ones = 0
    zeros = 0
    for bits in random_bits:
        ones |= bits
        zeros |= ~bits & free
    assert ones == zeros == free
