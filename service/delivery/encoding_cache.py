"""Compiled encoding plans, kept per process so the delivery hot path never recompiles.

A plan depends on the integration's data fields, the project's field map and the
organization's catalogue. The key holds what changes when any of them does:

- `integration.version`: bumped on every UPDATE of the integration row (`version_id_col`), and
  saving data fields or syncing the survey (which rewrites the field map) touches it;
- the catalogue's `version` (0 when none is stored);
- the project's `updated_at`, so even a field map changed without touching the integration
  (an operator's fix, a test) is never served from a stale plan.

So a stale entry can never be hit. Storing a new plan drops the integration's older ones, and
the cache is a bounded LRU, so integrations that stop delivering age out. Each worker process
has its own cache; nothing here is shared or needs invalidating across processes.
"""

import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from service.data_fields.encoding import EncodingPlan

DEFAULT_MAX_PLANS = 512


@dataclass(frozen=True, slots=True)
class PlanKey:
    integration_id: uuid.UUID
    integration_version: int
    catalog_version: int
    project_updated_at: datetime


class PlanCache:
    """A bounded LRU of compiled plans. Not thread-safe; one asyncio loop uses it."""

    def __init__(self, max_plans: int = DEFAULT_MAX_PLANS) -> None:
        if max_plans < 1:
            raise ValueError("max_plans must be at least 1")
        self.max_plans = max_plans
        self._plans: OrderedDict[PlanKey, EncodingPlan] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._plans)

    def get(self, key: PlanKey) -> EncodingPlan | None:
        plan = self._plans.get(key)
        if plan is None:
            self.misses += 1
            return None
        self._plans.move_to_end(key)
        self.hits += 1
        return plan

    def put(self, key: PlanKey, plan: EncodingPlan) -> None:
        # An integration needs only its newest plan: drop the ones its older versions left.
        for stale in [k for k in self._plans if k.integration_id == key.integration_id]:
            del self._plans[stale]
        self._plans[key] = plan
        self._plans.move_to_end(key)
        while len(self._plans) > self.max_plans:
            self._plans.popitem(last=False)

    def clear(self) -> None:
        self._plans.clear()


plan_cache = PlanCache()
