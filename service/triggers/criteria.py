"""Criteria checked against the organization's catalogue.

Categories, category groups, scores and custom metadata fields must exist in the catalogue,
spelled exactly (a name that differs only in case gets a "did you mean" hint). Teams are not
checked: the catalogue lists call-group *types*, not the groups themselves.

The check runs when criteria are written. A trigger saved earlier keeps working if the
catalogue later drops a name it uses; it simply sees that name never occur.
"""

from collections.abc import Iterable, Mapping

from service.catalog.schemas import CatalogDocument
from service.errors import FieldError
from service.triggers.schemas import CategoryFilter, Criteria


def _escape(token: str) -> str:
    # JSON pointer (RFC 6901) escaping, so names with `/` or `~` still point at one key.
    return token.replace("~", "~0").replace("/", "~1")


def _unknown(kind: str, name: str, known: Mapping[str, str]) -> str:
    near = known.get(name.casefold())
    hint = f' Did you mean "{near}"?' if near else ""
    return f'"{name}" is not {kind} of the catalogue.{hint}'


def _folded(names: Iterable[str]) -> tuple[set[str], dict[str, str]]:
    exact = set(names)
    return exact, {name.casefold(): name for name in exact}


def _check_filter(
    errors: list[FieldError],
    pointer: str,
    rule: CategoryFilter | None,
    kind: str,
    names: set[str],
    folded: dict[str, str],
) -> None:
    if rule is None:
        return
    for key, listed in (("any", rule.any), ("all", rule.all), ("none", rule.none)):
        for index, name in enumerate(listed):
            if name not in names:
                errors.append(
                    FieldError(
                        pointer=f"{pointer}/{key}/{index}", detail=_unknown(kind, name, folded)
                    )
                )


def catalog_errors(
    criteria: Criteria, catalog: CatalogDocument, *, pointer: str = "/body/criteria"
) -> list[FieldError]:
    """Every name in the criteria that the catalogue does not have, each at its location."""
    errors: list[FieldError] = []
    categories, folded_categories = _folded(catalog.category_names())
    _check_filter(
        errors,
        f"{pointer}/categories",
        criteria.categories,
        "a category",
        categories,
        folded_categories,
    )
    groups, folded_groups = _folded(group.name for group in catalog.category_groups)
    _check_filter(
        errors,
        f"{pointer}/category_groups",
        criteria.category_groups,
        "a category group",
        groups,
        folded_groups,
    )
    scores, folded_scores = _folded(score.name for score in catalog.scores)
    for name in criteria.scores or {}:
        if name not in scores:
            errors.append(
                FieldError(
                    pointer=f"{pointer}/scores/{_escape(name)}",
                    detail=_unknown("a score", name, folded_scores),
                )
            )
    fields, folded_fields = _folded(field.name for field in catalog.custom_metadata_fields)
    for name in criteria.metadata or {}:
        if name not in fields:
            errors.append(
                FieldError(
                    pointer=f"{pointer}/metadata/{_escape(name)}",
                    detail=_unknown("a custom metadata field", name, folded_fields),
                )
            )
    return errors
