"""Time-ordered ids in bulk (UUID version 7, RFC 9562 §5.7).

Intake mints an id for every interaction and delivery it stores. With random (version 4) ids
each insert lands on a random page of the primary key's B-tree, and of every index that
leads with such an id, so an insert touches ever more distinct pages as the tables grow, and
intake slows with them. Version 7 ids begin with the Unix time in milliseconds: new rows go
to the right-hand edge of those indexes, the pages they touch stay few and hot.

What stays random is 74 bits per id (ids are not guessable, and never meant as secrets: the
API behind them needs a token). All ids of one call share its millisecond and read the
operating system's random source once, together.
"""

import os
import time
import uuid

_VERSION_7 = 0x7 << 76
_VARIANT_RFC_4122 = 0x2 << 62
_FIXED_BITS = (0xF << 76) | (0x3 << 62)  # the version nibble and the variant's two bits
_MASK_80 = (1 << 80) - 1


def time_ordered_uuids(count: int, *, now_ms: int | None = None) -> list[uuid.UUID]:
    """`count` version-7 UUIDs stamped with `now_ms` (default: the current Unix time in ms)."""
    stamp = (time.time_ns() // 1_000_000 if now_ms is None else now_ms) & ((1 << 48) - 1)
    prefix = stamp << 80
    data = os.urandom(10 * count)
    return [
        uuid.UUID(
            int=(prefix | int.from_bytes(data[at : at + 10]) & _MASK_80) & ~_FIXED_BITS
            | _VERSION_7
            | _VARIANT_RFC_4122
        )
        for at in range(0, 10 * count, 10)
    ]


def time_ordered_uuid() -> uuid.UUID:
    """One version-7 UUID (the default id of every table: `service.models.base.IdMixin`)."""
    return time_ordered_uuids(1)[0]
