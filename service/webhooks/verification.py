"""Standard Webhooks v1 verification of the platform's signed requests (design §7).

The `standardwebhooks` package does the HMAC and the ±5 minute tolerance. It raises a bare
`ValueError` for some malformed signature headers and `UnicodeDecodeError` for non-UTF-8
bodies (reliability-facts §0 item 10): every such failure is an authentication failure here,
answered 401, never a 500. An unknown organization fails the same way, so the endpoint is no
oracle for which organization ids exist.
"""

import binascii
import logging
from collections.abc import Mapping, Sequence

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from service.errors import Unauthorized

logger = logging.getLogger(__name__)

SIGNATURE_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")
MAX_HEADER_LENGTH = 4096


class SignatureRejected(Unauthorized):
    slug = "invalid-signature"

    def __init__(self) -> None:
        super().__init__(
            "The webhook signature could not be verified: check the signing secret, the "
            "webhook-id, webhook-timestamp and webhook-signature headers, and the sender's clock "
            "(±5 minutes).",
            headers={"WWW-Authenticate": 'Signature realm="standard-webhooks"'},
        )


def verify_signature(body: bytes, headers: Mapping[str, str], secrets: Sequence[str]) -> str:
    """Return the `webhook-id` if any active secret signed `body`; raise SignatureRejected."""
    signed = {name: headers.get(name, "") for name in SIGNATURE_HEADERS}
    if not all(signed.values()) or any(len(value) > MAX_HEADER_LENGTH for value in signed.values()):
        raise SignatureRejected()
    for secret in secrets:
        try:
            Webhook(secret).verify(body, signed, json_parse=False)
        except (WebhookVerificationError, ValueError, binascii.Error, TypeError):
            # UnicodeDecodeError is a ValueError: a non-UTF-8 body is never validly signed.
            continue
        return signed["webhook-id"]
    logger.info("webhook signature rejected (webhook-id %.64r)", signed["webhook-id"])
    raise SignatureRejected()
