"""The published OpenAPI document: FastAPI's, with error responses as problem+json only."""

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from service.errors import PROBLEM_JSON, problem_responses

REF_TEMPLATE = "#/components/schemas/{model}"
WRITE_METHODS = ("post", "put", "patch", "delete")


def _problem_only(document: dict[str, Any]) -> None:
    # `responses={code: {"model": Problem}}` also declares application/json; errors are
    # only ever sent as application/problem+json, so the document says just that.
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if PROBLEM_JSON in content:
                    content.pop("application/json", None)


def _document_body_cap(document: dict[str, Any]) -> None:
    # The body cap (service.kit.body_limit) answers 413 on any route sent too much; every
    # write route documents it, as routes do with their own refusals.
    def too_large() -> dict[str, Any]:
        return {
            "description": problem_responses(413)[413]["description"],
            "content": {PROBLEM_JSON: {"schema": {"$ref": REF_TEMPLATE.format(model="Problem")}}},
        }

    for path_item in document.get("paths", {}).values():
        for method, operation in path_item.items():
            responses = operation.get("responses", {})
            if method in WRITE_METHODS and "413" not in responses:
                operation["responses"] = dict(sorted({**responses, "413": too_large()}.items()))


def _add_models(document: dict[str, Any], models: Sequence[type[BaseModel]]) -> None:
    # Bodies a route reads raw (to verify a signature first) are documented by hand; their
    # models still belong in the components like every other schema.
    _, top = models_json_schema(
        [(model, "validation") for model in models], ref_template=REF_TEMPLATE
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in top.get("$defs", {}).items():
        schemas.setdefault(name, schema)


def install_openapi(app: FastAPI, *, extra_models: Sequence[type[BaseModel]] = ()) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            _problem_only(document)
            _document_body_cap(document)
            _add_models(document, extra_models)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
