import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from service.catalog.service import catalog as catalog_service
from service.models import AuditLogEntry, Catalog
from tests.catalog.documents import EMPTY_DOCUMENT, valid_document
from tests.conftest import Account
from tests.helpers import assert_problem


async def put_catalog(
    client: httpx.AsyncClient, account: Account, document: Any, *, if_match: str | None = None
) -> httpx.Response:
    headers = dict(account.headers)
    if if_match is not None:
        headers["If-Match"] = if_match
    return await client.put("/v1/catalog", json=document, headers=headers)


def body_of(response: httpx.Response) -> dict[str, Any]:
    """The answered catalogue without its version fields, to compare with a sent document."""
    body: dict[str, Any] = response.json()
    return {key: value for key, value in body.items() if key not in {"version", "updated_at"}}


def errors_by_pointer(body: dict[str, object]) -> dict[str, list[str]]:
    errors = body["errors"]
    assert isinstance(errors, list)
    found: dict[str, list[str]] = {}
    for error in errors:
        found.setdefault(error["pointer"], []).append(error["detail"])
    return found


async def audit_entries(
    sessionmaker: async_sessionmaker[AsyncSession], organization_id: uuid.UUID
) -> list[AuditLogEntry]:
    async with sessionmaker() as session:
        rows = await session.scalars(
            select(AuditLogEntry)
            .where(AuditLogEntry.organization_id == organization_id)
            .where(AuditLogEntry.action == "catalog.replaced")
            .order_by(AuditLogEntry.created_at)
        )
        return list(rows)


class TestGetCatalog:
    async def test_unauthenticated(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.get("/v1/catalog"), 401)

    async def test_new_organization_has_an_empty_catalogue_at_version_0(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        response = await client.get("/v1/catalog", headers=admin.headers)
        assert response.status_code == 200, response.text
        assert response.json() == {**EMPTY_DOCUMENT, "version": 0, "updated_at": None}
        assert response.headers["ETag"] == '"catalog-0"'

    async def test_viewer_reads_the_stored_catalogue(
        self, client: httpx.AsyncClient, admin: Account, viewer: Account
    ) -> None:
        assert (await put_catalog(client, admin, valid_document())).status_code == 200
        response = await client.get("/v1/catalog", headers=viewer.headers)
        assert response.status_code == 200, response.text
        assert body_of(response) == valid_document()
        assert response.json()["version"] == 1
        assert response.json()["updated_at"] is not None
        assert response.headers["ETag"] == '"catalog-1"'

    async def test_other_organization_sees_its_own_catalogue(
        self, client: httpx.AsyncClient, admin: Account, other_admin: Account
    ) -> None:
        assert (await put_catalog(client, admin, valid_document())).status_code == 200
        response = await client.get("/v1/catalog", headers=other_admin.headers)
        assert response.status_code == 200
        assert response.json() == {**EMPTY_DOCUMENT, "version": 0, "updated_at": None}


class TestReplaceCatalog:
    async def test_unauthenticated(self, client: httpx.AsyncClient) -> None:
        assert_problem(await client.put("/v1/catalog", json=valid_document()), 401)

    async def test_viewer_is_forbidden(
        self, client: httpx.AsyncClient, admin: Account, viewer: Account
    ) -> None:
        assert_problem(await put_catalog(client, viewer, valid_document()), 403)
        response = await client.get("/v1/catalog", headers=admin.headers)
        assert response.json()["version"] == 0

    async def test_valid_document_round_trips(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        response = await put_catalog(client, admin, valid_document())
        assert response.status_code == 200, response.text
        assert body_of(response) == valid_document()
        assert response.json()["version"] == 1
        assert response.headers["ETag"] == '"catalog-1"'

        read = await client.get("/v1/catalog", headers=admin.headers)
        assert read.json() == response.json()
        assert read.headers["ETag"] == '"catalog-1"'

    async def test_replacing_bumps_the_version_and_etag(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        await put_catalog(client, admin, valid_document())
        changed = valid_document()
        changed["categories"].append({"name": "Escalation", "description": None})
        response = await put_catalog(client, admin, changed)
        assert response.status_code == 200, response.text
        assert response.json()["version"] == 2
        assert response.headers["ETag"] == '"catalog-2"'
        assert body_of(response) == changed

    async def test_names_are_stripped_and_omitted_lists_are_empty(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        sent = {
            "categories": [{"name": "  Frustration ", "description": "   "}],
            "category_groups": [{"name": " Effort", "members": [" Frustration  "]}],
        }
        response = await put_catalog(client, admin, sent)
        assert response.status_code == 200, response.text
        assert body_of(response) == {
            **EMPTY_DOCUMENT,
            "categories": [{"name": "Frustration", "description": None}],
            "category_groups": [{"name": "Effort", "members": ["Frustration"]}],
        }

    async def test_matching_if_match_is_accepted(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        first = await put_catalog(client, admin, valid_document(), if_match='"catalog-0"')
        assert first.status_code == 200, first.text
        changed = valid_document()
        changed["call_group_types"].append({"name": "Site"})
        second = await put_catalog(client, admin, changed, if_match=first.headers["ETag"])
        assert second.status_code == 200, second.text
        assert second.headers["ETag"] == '"catalog-2"'

    async def test_stale_if_match_is_refused(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        await put_catalog(client, admin, valid_document())
        changed = valid_document()
        changed["call_group_types"] = []
        response = await put_catalog(client, admin, changed, if_match='"catalog-0"')
        body = assert_problem(response, 412)
        assert '"catalog-1"' in str(body["detail"])
        read = await client.get("/v1/catalog", headers=admin.headers)
        assert body_of(read) == valid_document()

    async def test_unchanged_document_keeps_version_and_writes_no_audit_entry(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        first = await put_catalog(client, admin, valid_document())
        # The same catalogue, written differently: padded names, integers for floats.
        same = valid_document()
        same["categories"][0]["name"] = " Frustration "
        same["scores"][0]["max"] = 10
        del same["scores"][1]["ranges"]
        second = await put_catalog(client, admin, same, if_match='"catalog-1"')
        assert second.status_code == 200, second.text
        assert second.json() == first.json()
        assert second.headers["ETag"] == '"catalog-1"'
        assert len(await audit_entries(sessionmaker, admin.organization.id)) == 1

    async def test_empty_document_for_a_new_organization_stores_nothing(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        response = await put_catalog(client, admin, {})
        assert response.status_code == 200, response.text
        assert response.json() == {**EMPTY_DOCUMENT, "version": 0, "updated_at": None}
        assert await audit_entries(sessionmaker, admin.organization.id) == []
        async with sessionmaker() as session:
            assert await session.scalar(select(func.count()).select_from(Catalog)) == 0

    async def test_writes_an_audit_entry_with_counts(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
    ) -> None:
        await put_catalog(client, admin, valid_document())
        [entry] = await audit_entries(sessionmaker, admin.organization.id)
        assert entry.actor == admin.user.email
        assert entry.actor_user_id == admin.user.id
        assert entry.integration_id is None
        assert entry.details == {
            "version": 1,
            "previous_version": 0,
            "counts": {
                "categories": 3,
                "category_groups": 1,
                "scores": 2,
                "custom_metadata_fields": 1,
                "call_group_types": 1,
            },
        }

    async def test_malformed_json(self, client: httpx.AsyncClient, admin: Account) -> None:
        response = await client.put(
            "/v1/catalog",
            content=b'{"categories": [',
            headers={**admin.headers, "Content-Type": "application/json"},
        )
        assert_problem(response, 400)

    async def test_concurrent_update_answers_412(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        await put_catalog(client, admin, valid_document())
        load = catalog_service._load

        async def load_then_lose_the_race(
            session: AsyncSession, organization_id: uuid.UUID
        ) -> Catalog | None:
            row = await load(session, organization_id)
            # Another request changes the row between our read and our write.
            async with sessionmaker.begin() as other:
                winner = await other.get(Catalog, organization_id)
                assert winner is not None
                winner.document = {**winner.document, "call_group_types": [{"name": "Site"}]}
            return row

        monkeypatch.setattr(catalog_service, "_load", load_then_lose_the_race)
        response = await put_catalog(client, admin, {**valid_document(), "scores": []})
        assert "changed by another request" in str(assert_problem(response, 412)["detail"])
        monkeypatch.undo()

        read = await client.get("/v1/catalog", headers=admin.headers)
        assert read.json()["version"] == 2
        assert read.json()["call_group_types"] == [{"name": "Site"}]

    async def test_concurrent_first_write_answers_412(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        sessionmaker: async_sessionmaker[AsyncSession],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        load = catalog_service._load

        async def load_then_lose_the_race(
            session: AsyncSession, organization_id: uuid.UUID
        ) -> Catalog | None:
            row = await load(session, organization_id)
            async with sessionmaker.begin() as other:
                other.add(Catalog(organization_id=organization_id, document=EMPTY_DOCUMENT))
            return row

        monkeypatch.setattr(catalog_service, "_load", load_then_lose_the_race)
        response = await put_catalog(client, admin, valid_document())
        assert "changed by another request" in str(assert_problem(response, 412)["detail"])
        monkeypatch.undo()

        # The retry after re-reading succeeds.
        read = await client.get("/v1/catalog", headers=admin.headers)
        assert read.json()["version"] == 1
        retry = await put_catalog(client, admin, valid_document(), if_match=read.headers["ETag"])
        assert retry.status_code == 200, retry.text
        assert retry.json()["version"] == 2


Mutation = Callable[[dict[str, Any]], None]


def _set(path: tuple[str | int, ...], value: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        target: Any = document
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _append(path: tuple[str | int, ...], value: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        target: Any = document
        for part in path:
            target = target[part]
        target.append(value)

    return mutate


def _extend_categories(count: int) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        document["categories"] += [{"name": f"C{index}"} for index in range(count)]

    return mutate


def _reverse_tei_ranges(document: dict[str, Any]) -> None:
    document["scores"][0]["ranges"].reverse()


# (mutation of the valid document, pointer of the error, fragment of its detail)
VALIDATION_CASES: dict[str, tuple[Mutation, str, str]] = {
    "blank_name": (
        _set(("categories", 2, "name"), "   "),
        "/body/categories/2/name",
        "at least 1 character",
    ),
    "name_too_long": (
        _set(("categories", 2, "name"), "x" * 201),
        "/body/categories/2/name",
        "at most 200 characters",
    ),
    "name_with_control_character": (
        _set(("custom_metadata_fields", 0, "name"), "Product\nline"),
        "/body/custom_metadata_fields/0/name",
        "control characters (found U+000A",
    ),
    "description_with_nul": (
        _set(("categories", 0, "description"), "bad\u0000byte"),
        "/body/categories/0/description",
        "control characters",
    ),
    "duplicate_category_ignoring_case": (
        _append(("categories",), {"name": " FRUSTRATION"}),
        "/body/categories/3/name",
        '"FRUSTRATION" is already the name of categories/0',
    ),
    "duplicate_category_group": (
        _append(("category_groups",), {"name": "effort", "members": ["Cancellation"]}),
        "/body/category_groups/1/name",
        "already the name of category_groups/0",
    ),
    "duplicate_score": (
        _append(("scores",), {"name": "tei", "min": 0, "max": 1}),
        "/body/scores/2/name",
        "already the name of scores/0",
    ),
    "duplicate_custom_metadata_field": (
        _append(("custom_metadata_fields",), {"name": "product LINE"}),
        "/body/custom_metadata_fields/1/name",
        "already the name of custom_metadata_fields/0",
    ),
    "duplicate_call_group_type": (
        _append(("call_group_types",), {"name": "team"}),
        "/body/call_group_types/1/name",
        "already the name of call_group_types/0",
    ),
    "unknown_member": (
        _append(("category_groups", 0, "members"), "Nope"),
        "/body/category_groups/0/members/2",
        '"Nope" is not a category of this catalogue',
    ),
    "member_in_other_case": (
        _append(("category_groups", 0, "members"), "cancellation"),
        "/body/category_groups/0/members/2",
        'Did you mean "Cancellation"?',
    ),
    "duplicate_member": (
        _append(("category_groups", 0, "members"), "Frustration"),
        "/body/category_groups/0/members/2",
        '"Frustration" is listed twice (also at members/0)',
    ),
    "group_without_members": (
        _set(("category_groups", 0, "members"), []),
        "/body/category_groups/0/members",
        "at least one member",
    ),
    "score_min_not_below_max": (
        _set(("scores", 1, "min"), 100),
        "/body/scores/1/max",
        "greater than the score's min (100)",
    ),
    "score_bound_as_string": (
        _set(("scores", 1, "max"), "100"),
        "/body/scores/1/max",
        "valid number",
    ),
    "score_bound_too_large": (
        _set(("scores", 1, "max"), 1e13),
        "/body/scores/1/max",
        "less than or equal to",
    ),
    "range_min_not_below_max": (
        _set(("scores", 0, "ranges", 1, "max"), 3.3),
        "/body/scores/0/ranges/1/max",
        "greater than the range's min (3.3)",
    ),
    "ranges_not_sorted": (
        _reverse_tei_ranges,
        "/body/scores/0/ranges",
        "sorted by min",
    ),
    "duplicate_range_label": (
        _set(("scores", 0, "ranges", 2, "label"), "low"),
        "/body/scores/0/ranges/2/label",
        '"low" is already the label of ranges/0',
    ),
    "first_range_not_at_score_min": (
        _set(("scores", 0, "ranges", 0, "min"), 1),
        "/body/scores/0/ranges/0/min",
        "first range must start at the score's min (0)",
    ),
    "last_range_not_at_score_max": (
        _set(("scores", 0, "ranges", 2, "max"), 9.5),
        "/body/scores/0/ranges/2/max",
        "last range must end at the score's max (10)",
    ),
    "gap_between_ranges": (
        _set(("scores", 0, "ranges", 1, "min"), 3.4),
        "/body/scores/0/ranges/1/min",
        "leaves a gap after the previous one: it must start where that one ends (3.3)",
    ),
    "overlapping_ranges": (
        _set(("scores", 0, "ranges", 1, "min"), 3.0),
        "/body/scores/0/ranges/1/min",
        "overlaps the previous one",
    ),
    "unknown_field": (
        _set(("categories", 0, "colour"), "red"),
        "/body/categories/0/colour",
        "Extra inputs are not permitted",
    ),
    "read_only_version_sent_back": (
        _set(("version",), 1),
        "/body/version",
        "Extra inputs are not permitted",
    ),
    "too_many_categories": (
        _extend_categories(5001 - 3),
        "/body/categories",
        "at most 5000 items",
    ),
    "too_many_ranges": (
        _set(
            ("scores", 1, "ranges"),
            [{"label": f"R{index}", "min": index, "max": index + 1} for index in range(101)],
        ),
        "/body/scores/1/ranges",
        "at most 100 items",
    ),
}


class TestReplaceCatalogValidation:
    @pytest.mark.parametrize(
        ("mutate", "pointer", "detail"),
        list(VALIDATION_CASES.values()),
        ids=list(VALIDATION_CASES),
    )
    async def test_rule(
        self,
        client: httpx.AsyncClient,
        admin: Account,
        mutate: Mutation,
        pointer: str,
        detail: str,
    ) -> None:
        document = valid_document()
        mutate(document)
        body = assert_problem(await put_catalog(client, admin, document), 422)
        found = errors_by_pointer(body)
        assert list(found) == [pointer], found
        assert any(detail in message for message in found[pointer]), found

        read = await client.get("/v1/catalog", headers=admin.headers)
        assert read.json()["version"] == 0

    async def test_non_finite_number(self, client: httpx.AsyncClient, admin: Account) -> None:
        # Python's JSON parser accepts NaN; the schema must not.
        response = await client.put(
            "/v1/catalog",
            content=b'{"scores": [{"name": "TEI", "min": NaN, "max": Infinity}]}',
            headers={**admin.headers, "Content-Type": "application/json"},
        )
        found = errors_by_pointer(assert_problem(response, 422))
        assert set(found) == {"/body/scores/0/min", "/body/scores/0/max"}
        assert all("finite number" in message[0] for message in found.values())

    async def test_body_that_is_not_an_object(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        body = assert_problem(await put_catalog(client, admin, [1, 2]), 422)
        assert list(errors_by_pointer(body)) == ["/body"]

    async def test_all_errors_are_collected(
        self, client: httpx.AsyncClient, admin: Account
    ) -> None:
        document = valid_document()
        document["categories"].append({"name": "x" * 201})  # invalid on its own
        document["categories"].append({"name": "frustration"})  # duplicate
        document["category_groups"][0]["members"] += ["Nope", "Frustration"]
        document["category_groups"].append({"name": "Empty", "members": []})
        document["scores"][0]["ranges"][1]["min"] = 3.4  # gap
        document["scores"][0]["ranges"][2]["label"] = "LOW"  # duplicate label
        document["scores"][1]["min"] = "low"  # not a number
        document["call_group_types"].append({"name": "TEAM"})
        document["surprise"] = True

        body = assert_problem(await put_catalog(client, admin, document), 422)
        assert set(errors_by_pointer(body)) == {
            "/body/categories/3/name",
            "/body/categories/4/name",
            "/body/category_groups/0/members/2",
            "/body/category_groups/0/members/3",
            "/body/category_groups/1/members",
            "/body/scores/0/ranges/1/min",
            "/body/scores/0/ranges/2/label",
            "/body/scores/1/min",
            "/body/call_group_types/1/name",
            "/body/surprise",
        }
        assert body["detail"] == "The request has 10 invalid field(s)."
