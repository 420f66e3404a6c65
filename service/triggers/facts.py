"""`InteractionFacts`: the values trigger indexes look up in one interaction, derived once.

Planning asks every integration's `TriggerSet` about the same interaction. Without sharing,
each set would rebuild the same derived facts (the names of the categories that occurred, the
scores by name, metadata as text, the start in a zone...) for itself: N integrations, N times
the work. One `InteractionFacts` per interaction, passed to every set's `first_match`, derives
each fact at most once, on first use, so a fact no trigger asks about costs nothing.

Plain attributes (`channel`, `duration_seconds`, ...) are read from `interaction` directly:
a cached copy would cost as much to read as the attribute itself.

The facts of an interaction never change (the model is frozen); build new facts for another
interaction.
"""

from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from datetime import datetime
from zoneinfo import ZoneInfo

from service.interactions.schemas import Interaction


class InteractionFacts:
    """One interaction's derived facts, each computed on first use and then shared.

    The facts are methods that cache their result, and three dictionaries that the trigger
    indexes fill key by key, as they need them (a lookup and, on a miss, a store: cheaper than
    a dictionary that calls back to fill itself):

    - `metadata_texts`: field → `schemas.metadata_text` of its value (None: absent or null);
    - `local_starts`: zone → `started_at` converted to that zone;
    - `local_micros`: zone → `compiled.micros_of_day` of that local start.
    """

    __slots__ = (
        "_category_names",
        "_group_names",
        "_identifier",
        "_scores",
        "_team_names",
        "interaction",
        "local_micros",
        "local_starts",
        "metadata_texts",
    )

    def __init__(self, interaction: Interaction) -> None:
        # Building the facts is part of every `first_match(interaction)` call: nothing is
        # computed here.
        self.interaction = interaction
        self.metadata_texts: dict[str, str | None] = {}
        self.local_starts: dict[ZoneInfo, datetime] = {}
        self.local_micros: dict[ZoneInfo, int] = {}
        self._category_names: AbstractSet[str] | None
        self._group_names: AbstractSet[str] | None
        self._team_names: Sequence[str] | None
        self._scores: dict[str, float] | None
        self._identifier: bytes | None
        self._category_names = self._group_names = self._team_names = None
        self._scores = self._identifier = None

    def __repr__(self) -> str:
        return f"InteractionFacts({self.interaction.id!r})"

    def category_names(self) -> AbstractSet[str]:
        """The names of the categories that occurred (`occurrences > 0`)."""
        names = self._category_names
        if names is None:
            names = self._category_names = {
                category.name for category in self.interaction.categories if category.occurrences
            }
        return names

    def group_names(self) -> AbstractSet[str]:
        """The groups the payload lists for the categories that occurred."""
        groups = self._group_names
        if groups is None:
            groups = self._group_names = {
                group
                for category in self.interaction.categories
                if category.occurrences
                for group in category.groups
            }
        return groups

    def occurred(self) -> tuple[AbstractSet[str], AbstractSet[str]]:
        """(`category_names()`, `group_names()`), both from one pass over the categories."""
        names = self._category_names
        groups = self._group_names
        if names is None or groups is None:
            found: set[str] = set()
            listed: list[str] = []
            for category in self.interaction.categories:
                if category.occurrences:
                    found.add(category.name)
                    listed += category.groups  # an operator: cheaper than a call per category
            names = self._category_names = found
            groups = self._group_names = set(listed)
        return names, groups

    def team_names(self) -> Sequence[str]:
        """The names of the interaction's call groups, in order."""
        teams = self._team_names
        if teams is None:
            teams = self._team_names = [group.name for group in self.interaction.call_groups]
        return teams

    def scores(self) -> dict[str, float]:
        """Score values by name; the first of a repeated name counts. Do not modify."""
        values = self._scores
        if values is None:
            values = self._scores = {}
            for item in self.interaction.scores:
                values.setdefault(item.name, item.value)
        return values

    def identifier(self) -> bytes:
        """The interaction id as UTF-8, what sample rates hash."""
        identifier = self._identifier
        if identifier is None:
            identifier = self._identifier = self.interaction.id.encode()
        return identifier
