"""ETags for versioned objects and the `If-Match` precondition on writes."""

from service.errors import PreconditionFailed


def etag_for(kind: str, version: int) -> str:
    return f'"{kind}-{version}"'


def check_if_match(if_match: str | None, kind: str, version: int) -> None:
    """Raise 412 when the client's `If-Match` names another version (absent: no check)."""
    if if_match is None:
        return
    current = etag_for(kind, version)
    candidates = {candidate.strip() for candidate in if_match.split(",")}
    # Weak comparison (RFC 9110 §8.8.3.2) is fine here: our ETags are never weak, but a
    # proxy may have added W/.
    normalized = {candidate.removeprefix("W/") for candidate in candidates}
    if "*" in normalized or current in normalized:
        return
    raise PreconditionFailed(
        f"If-Match {if_match} does not match the current version {current}: "
        "the object changed since you read it; read it again and reapply your change."
    )
