"""Assertions shared by the test modules."""

import httpx


def assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    """Assert an RFC 9457 problem answer with this status; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str)
    assert isinstance(body["title"], str)
    return body
