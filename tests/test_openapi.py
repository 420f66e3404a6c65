"""The committed OpenAPI document is the app's, and it is complete enough for a client."""

import json
from pathlib import Path

from fastapi import FastAPI

OPENAPI_FILE = Path(__file__).resolve().parent.parent / "openapi" / "openapi.json"


def test_committed_document_matches_the_app(app: FastAPI) -> None:
    committed = json.loads(OPENAPI_FILE.read_text())
    assert committed == app.openapi(), (
        "openapi/openapi.json is stale: regenerate it with "
        "`service openapi --output openapi/openapi.json`"
    )


def test_every_schema_has_examples(app: FastAPI) -> None:
    schemas = app.openapi()["components"]["schemas"]
    missing = [
        name
        for name, schema in schemas.items()
        if "examples" not in schema and "enum" not in schema
    ]
    assert missing == []


def test_every_operation_is_tagged_summarised_and_documents_its_errors(app: FastAPI) -> None:
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            assert operation.get("tags"), where
            assert operation.get("summary"), where
            assert operation.get("operationId"), where
            for code, response in operation["responses"].items():
                if code.startswith(("4", "5")):
                    assert list(response["content"]) == ["application/problem+json"], where
            if operation.get("security") or (path.startswith("/v1/") and path != "/v1/auth/token"):
                assert "401" in operation["responses"], where


def test_admin_routes_are_protected_by_oauth2(app: FastAPI) -> None:
    document = app.openapi()
    scheme = document["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["flows"]["password"]["tokenUrl"] == "/v1/auth/token"
    assert "security" in document["paths"]["/v1/integrations"]["post"]
