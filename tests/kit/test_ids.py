"""`random_uuids`: version-4 UUIDs in bulk, as `uuid.uuid4()` would make them."""

import uuid

import pytest

from service.kit.ids import random_uuids


@pytest.mark.parametrize("count", [1, 2, 17])
def test_count_distinct_version_4_uuids(count: int) -> None:
    made = random_uuids(count)

    assert len(made) == count
    assert len(set(made)) == count
    assert all(isinstance(one, uuid.UUID) for one in made)
    assert all(one.version == 4 for one in made)
    assert all(one.variant == uuid.RFC_4122 for one in made)


def test_none_for_zero() -> None:
    assert random_uuids(0) == []


def test_large_counts_are_distinct_and_well_formed() -> None:
    made = random_uuids(100_000)

    assert len(set(made)) == len(made) == 100_000
    assert {(one.version, one.variant) for one in made} == {(4, uuid.RFC_4122)}
    # Each half of each id is its own random bits (the 16-byte slices do not overlap).
    assert len({one.int >> 64 for one in made}) == len(made)
    assert len({one.int & (2**64 - 1) for one in made}) == len(made)


def test_calls_differ() -> None:
    assert set(random_uuids(100)).isdisjoint(random_uuids(100))


def test_the_same_form_as_uuid4() -> None:
    """The fixed bits (version nibble, variant bits) as `uuid.uuid4()` sets them."""
    [made] = random_uuids(1)
    reference = uuid.uuid4()

    assert str(made)[14] == str(reference)[14] == "4"
    assert str(made)[19] in "89ab"
    assert made.int >> 76 & 0xF == reference.int >> 76 & 0xF == 4
    assert made.int >> 62 & 0b11 == reference.int >> 62 & 0b11 == 0b10
