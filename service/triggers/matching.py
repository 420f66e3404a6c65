"""The trigger engine: pure, compiled once, cheap to evaluate (design §5).

Semantics, exactly:

- AND across criteria, OR within a list; an empty list (or an absent criterion) is no
  constraint, so empty criteria match every interaction.
- A constrained fact the interaction does not have never matches: no agent (or agent id) when
  `agents` is set, no `duration_seconds` when it is bounded, no such score, no such metadata
  field, no country, and so on.
- `channels`, `directions`, `countries`, `languages`: the interaction's value is in the list.
  `agents` / `customers` match the agent's / customer's `id`; `teams` match when any of the
  interaction's call-group names is listed; `numbers_dialed` match exactly. Names and ids are
  compared exactly (case-sensitive), as the catalogue and the platform spell them.
- `{min, max}` bounds are inclusive, either may be omitted; `scores: {"TEI": {}}` only asks
  that the score exists.
- Time criteria are read in `criteria.timezone` (default UTC): the interaction's start is
  converted to that zone, then its local date is compared with `date_from` / `date_to` (both
  inclusive), its ISO weekday (1 = Monday) with `days_of_week`, its local time of day with
  `time_of_day` (`from` inclusive, `to` exclusive, `from > to` wraps midnight).
- `categories`: over the names of the categories that occurred (`occurrences > 0`): `any`
  needs at least one listed name, `all` every listed name, `none` no listed name.
  `category_groups`: likewise over the `groups` the payload lists for those categories.
- `metadata`: `{field: [values]}` matches when the interaction's value of `field`, as text
  (`schemas.metadata_text`: strings exactly, `true`/`false`, `5` for 5 and 5.0), is listed.
  A null value counts as absent.
- `sample_rate` r keeps an interaction when
  `int(sha256(f"{trigger_id}:{interaction_id}").hexdigest()[:8], 16) / 2**32 < r`
  (the trigger id in its canonical lowercase, hyphenated form; the id as UTF-8). It is applied
  after everything else, so it thins out the interactions the trigger would otherwise select;
  0 keeps none, 1 keeps all, and a larger rate keeps a superset of a smaller one.

Two evaluators share the compiled form:

- `CompiledTrigger.matches(interaction)`: one trigger, check by check, cheapest first. It is the
  readable reference.
- `TriggerSet`: the triggers of one integration, indexed once so that finding the first match
  costs a few dictionary lookups and bisections per *criterion kind*, not per trigger. Each
  trigger is a bit of an int; every index answers "which triggers accept this value" as a mask,
  the masks are ANDed, and the lowest surviving bit (position order) wins, with the
  sample-rate hash computed only for the candidates actually reached. The property tests check
  that both evaluators agree.

The values the indexes look up (occurred category names, scores by name, metadata as text, the
start in a zone...) are an `InteractionFacts`, derived lazily and at most once per interaction:
planning builds one per interaction and shares it between every integration's `TriggerSet`.
"""

from collections.abc import Iterable, Sequence

from service.interactions.schemas import Interaction
from service.triggers.compiled import CompiledTrigger, compile_trigger, sample_fraction
from service.triggers.facts import InteractionFacts
from service.triggers.index import TriggerSet

__all__ = [
    "CompiledTrigger",
    "InteractionFacts",
    "TriggerSet",
    "compile_trigger",
    "first_match",
    "sample_fraction",
]

# The last plain list or tuple `first_match` indexed, with a snapshot of its elements, so
# calling it again with the same, unchanged list reuses the index.
_last_indexed: tuple[Sequence[CompiledTrigger], Sequence[CompiledTrigger], TriggerSet] | None = None


def _indexed(triggers: Iterable[CompiledTrigger]) -> TriggerSet:
    global _last_indexed
    if isinstance(triggers, TriggerSet):
        return triggers
    cached = _last_indexed
    if isinstance(triggers, list | tuple):
        # Same object and (for a mutable list) the same elements: list equality checks
        # identity first, so this costs far less than rebuilding the index.
        if cached is not None and cached[0] is triggers and cached[1] == triggers:
            return cached[2]
        snapshot: Sequence[CompiledTrigger] = (
            list(triggers) if isinstance(triggers, list) else triggers
        )
        indexed = TriggerSet(snapshot)
        _last_indexed = (triggers, snapshot, indexed)
        return indexed
    return TriggerSet(triggers)


def first_match(
    triggers: Iterable[CompiledTrigger], interaction: Interaction | InteractionFacts
) -> CompiledTrigger | None:
    """The first enabled trigger (in the given, position, order) that selects the interaction.

    Pass a `TriggerSet` (what `trigger_service.compiled_for_integration` returns) to reuse its
    index; a plain list is indexed on first use and the index kept while the same list is
    passed again. Pass the interaction's `InteractionFacts` to share its derived facts between
    calls about the same interaction.
    """
    return _indexed(triggers).first_match(interaction)
