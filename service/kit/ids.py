"""Random ids in bulk.

`uuid.uuid4()` reads the operating system's random source once per id; intake mints an id
for every interaction and delivery of a batch, so it reads once for all of them (the same
source, the same randomness, one system call).
"""

import os
import uuid


def random_uuids(count: int) -> list[uuid.UUID]:
    """`count` version-4 UUIDs, as `uuid.uuid4()` would make them."""
    data = os.urandom(16 * count)
    return [uuid.UUID(bytes=data[at : at + 16], version=4) for at in range(0, 16 * count, 16)]
