"""Standard Webhooks v1 verification of the platform's signed requests (design §7).

The `standardwebhooks` package does the HMAC and the ±5 minute tolerance. It raises a bare
`ValueError` for some malformed signature headers and `UnicodeDecodeError` for non-UTF-8
bodies (reliability-facts §0 item 10): every such failure is an authentication failure here,
answered 401, never a 500. An unknown organization fails the same way, so the endpoint is no
oracle for which organization ids exist.
"""

import binascii
import logging
import re
from collections.abc import Mapping, Sequence

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.datastructures import Headers

from service.errors import Unauthorized

logger = logging.getLogger(__name__)

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
MAX_HEADER_LENGTH = 4096

# The library is lenient where a malformed header should fail: it reads the timestamp with
# float() (`1.7e9`, `+1700000000`, `1_700_000_000`, ` nan`) and signs the integer it rounds to,
# and its base64 decoding skips characters outside the alphabet (`v1,<good>!!` verifies). So
# the forms are checked here first. The webhook id is stored (webhook_receipts, 200
# characters, where PostgreSQL refuses NUL): visible ASCII only.
_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,200}")
_TIMESTAMP = re.compile(r"[0-9]{1,20}")
# Space-separated `version,base64` entries; a v1 one is a padded HMAC-SHA256 (32 bytes).
_SIGNATURE_ENTRY = re.compile(r"[a-z0-9]+,[A-Za-z0-9+/]+={0,2}")
_V1_ENTRY = re.compile(r"v1,[A-Za-z0-9+/]{43}=")


def signature_headers(headers: Headers) -> dict[str, str]:
    """The three signature headers of a request, without the whitespace HTTP allows around a
    value; "" for one that is missing or repeated (which copy counts would be ambiguous)."""
    found = {name: headers.getlist(name) for name in SIGNATURE_HEADERS}
    return {
        name: values[0].strip(" \t") if len(values) == 1 else "" for name, values in found.items()
    }


def _well_formed(signed: Mapping[str, str]) -> bool:
    signatures = signed["webhook-signature"]
    return (
        _MESSAGE_ID.fullmatch(signed["webhook-id"]) is not None
        and _TIMESTAMP.fullmatch(signed["webhook-timestamp"]) is not None
        and 0 < len(signatures) <= MAX_HEADER_LENGTH
        and all(
            _SIGNATURE_ENTRY.fullmatch(entry)
            and (not entry.startswith("v1,") or _V1_ENTRY.fullmatch(entry))
            for entry in signatures.split(" ")
        )
    )


class SignatureRejected(Unauthorized):
    slug = "invalid-signature"

    def __init__(self) -> None:
        super().__init__(
            "The webhook signature could not be verified: check the signing secret, the "
            "webhook-id, webhook-timestamp and webhook-signature headers, and the sender's clock "
            "(±5 minutes).",
            headers={"WWW-Authenticate": 'Signature realm="standard-webhooks"'},
        )

    @classmethod
    def logged(cls, headers: Mapping[str, str]) -> "SignatureRejected":
        logger.info("webhook signature rejected (webhook-id %.64r)", headers.get("webhook-id", ""))
        return cls()


def signed_by(body: bytes, headers: Mapping[str, str], verifiers: Sequence[Webhook]) -> str | None:
    """The `webhook-id` if one of the verifiers (an active secret each) signed `body`."""
    signed = {name: headers.get(name, "") for name in SIGNATURE_HEADERS}
    if not _well_formed(signed):
        return None
    for verifier in verifiers:
        try:
            verifier.verify(body, signed, json_parse=False)
        except (WebhookVerificationError, ValueError, binascii.Error, TypeError):
            # UnicodeDecodeError is a ValueError: a non-UTF-8 body is never validly signed.
            continue
        return signed["webhook-id"]
    return None
