"""Every URL the connector sends to Qualtrics is built here, from validated parts only.

An admin types the Qualtrics subdomain, and it becomes the host that receives our OAuth client
secret. A careless join lets that field point the service anywhere (reliability-facts §5.5,
OWASP API7 SSRF): ``evil.com#`` gives ``https://evil.com#.qualtrics.com``, ``x@evil.com`` puts
``x`` in the userinfo, ``127.0.0.1`` or ``a.b`` adds labels. So the subdomain is *validated*, never
sanitised: one lower-case DNS label, ``^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$``. Then the URL is
built from the configured template, parsed again, and its scheme, host and port are checked
against what the template promises. Survey and question ids get the same treatment before they
become path segments.

Decisions worth knowing:

* Upper case is accepted and lower-cased (DNS is case-insensitive), but only after the input is
  known to be ASCII: ``"\\u212a".lower()`` is the ASCII ``"k"`` (Kelvin sign), which a
  lower-then-match check would wrongly accept.
* Surrounding whitespace is refused rather than stripped, like every other stray character:
  the form layer may strip if it wants to; the validator does not guess.
* Labels with ``--`` in the third and fourth positions (RFC 5891 "reserved" labels, which
  includes every punycode ``xn--`` A-label) are refused. No Qualtrics data center id is an IDN;
  httpx shows an A-label as Unicode in ``URL.host`` (a homograph in our logs of what the admin
  typed), and a malformed one makes ``URL.host`` raise, e.g. while matching proxy mounts.
* Only a single label is accepted, so a brand host such as ``cornell.ca1`` is refused: use the
  data center id (``ca1``), which Qualtrics serves for every brand on it.
* The template (``CONNECTOR_QUALTRICS_BASE_URL``) is operator configuration. It may put
  ``{subdomain}`` either as the first label of the host (``https://{subdomain}.qualtrics.com``)
  or as one whole path segment (``http://127.0.0.1:8099/{subdomain}`` for a local fake), and
  nowhere else; it may not carry userinfo, a query or a fragment.
"""

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

import httpx

DEFAULT_BASE_URL_TEMPLATE = "https://{subdomain}.qualtrics.com"
PLACEHOLDER = "{subdomain}"
API_PREFIX = "/API/v3"
TOKEN_PATH = "/oauth2/token"  # noqa: S105 (a URL path, not a password)

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# `[0-9]`, not `\d`: in a str pattern `\d` also matches non-ASCII digits (Arabic-Indic ...).
SURVEY_ID = re.compile(r"SV_[a-zA-Z0-9]{11,15}")
BLOCK_ID = re.compile(r"BL_[a-zA-Z0-9]{11,15}")
QUESTION_ID = re.compile(r"QID[0-9]+")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class InvalidSubdomain(ValueError):
    """The Qualtrics subdomain is not a single DNS label; the message says what is wrong."""


class InvalidBaseUrlTemplate(ValueError):
    """`CONNECTOR_QUALTRICS_BASE_URL` cannot be used safely; the message says why."""


def validate_subdomain(raw: str) -> str:
    """Return `raw` lower-cased if it is one DNS label, else raise `InvalidSubdomain`."""
    if not raw:
        raise InvalidSubdomain("The Qualtrics subdomain is empty.")
    shown = repr(raw[:80])
    if not raw.isascii():
        raise InvalidSubdomain(
            f"The Qualtrics subdomain {shown} contains non-ASCII characters; use the data "
            "center id, e.g. 'iad1' or 'fra1'."
        )
    label = raw.lower()
    if len(label) > 63 or not _LABEL.fullmatch(label):
        raise InvalidSubdomain(
            f"The Qualtrics subdomain {shown} is not a single DNS label: use 1 to 63 letters, "
            "digits and hyphens, not starting or ending with a hyphen, and no dots, e.g. "
            "'iad1' (the part before '.qualtrics.com')."
        )
    if label[2:4] == "--":
        raise InvalidSubdomain(
            f"The Qualtrics subdomain {shown} has '--' in its third and fourth characters, "
            "which DNS reserves for encoded (punycode) names; no Qualtrics data center uses one."
        )
    return label


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """(scheme, ASCII host, port or None for the scheme's default) as httpx will connect."""
    port = url.port
    if port == _DEFAULT_PORTS.get(url.scheme):
        port = None
    return url.scheme, url.raw_host.decode("ascii"), port


@dataclass(frozen=True, slots=True)
class BaseUrlTemplate:
    """A checked `CONNECTOR_QUALTRICS_BASE_URL`; `build()` turns a subdomain into a base URL."""

    template: str
    scheme: str
    # The ASCII host, with `{subdomain}` as its first label unless the placeholder is in the path.
    host: str
    port: int | None

    @classmethod
    def parse(cls, template: str) -> "BaseUrlTemplate":
        return _parse_template(template)

    def build(self, subdomain: str) -> "QualtricsBaseUrl":
        label = validate_subdomain(subdomain)
        url = self.template.replace(PLACEHOLDER, label).rstrip("/")
        parsed = httpx.URL(url)
        expected_host = self.host.replace(PLACEHOLDER, label)
        # The label cannot change the origin, but this is the line that guarantees it: whatever
        # the template and the label are, only the promised scheme, host and port are contacted.
        if _origin(parsed) != (self.scheme, expected_host, self.port) or (
            parsed.userinfo or parsed.query or parsed.fragment
        ):
            raise InvalidSubdomain(
                f"The Qualtrics subdomain {subdomain[:80]!r} does not give a URL on the "
                "expected host."
            )
        return QualtricsBaseUrl(url=url, scheme=self.scheme, host=expected_host, port=self.port)


@lru_cache(maxsize=16)
def _parse_template(template: str) -> BaseUrlTemplate:
    def refuse(why: str) -> InvalidBaseUrlTemplate:
        return InvalidBaseUrlTemplate(f"CONNECTOR_QUALTRICS_BASE_URL {template!r}: {why}")

    rest = template.replace(PLACEHOLDER, "")
    if template.count(PLACEHOLDER) != 1 or "{" in rest or "}" in rest:
        raise refuse("it must contain '{subdomain}' exactly once and no other braces")
    if not template.isascii() or any(ch.isspace() or ord(ch) < 0x20 for ch in template):
        raise refuse("it must be ASCII without whitespace")
    try:
        parts = urlsplit(template)
        probe = httpx.URL(template.replace(PLACEHOLDER, "probe"))
    except (ValueError, httpx.InvalidURL) as exc:
        raise refuse(f"it is not a valid URL ({exc})") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise refuse("the scheme must be https (or http for a local test server)")
    if "@" in parts.netloc or parts.query or parts.fragment or "?" in template or "#" in template:
        raise refuse("it may not contain userinfo, a query or a fragment")
    scheme, host, port = _origin(probe)
    if port is not None and not 0 < port < 65536:
        raise refuse("the port must be 1-65535")
    if PLACEHOLDER in parts.netloc:
        if not parts.netloc.startswith(PLACEHOLDER + ".") or not host.startswith("probe."):
            raise refuse("'{subdomain}' must be the first label of the host")
        suffix = host.removeprefix("probe.")
        if not _is_dns_name(suffix):
            raise refuse("the host after '{subdomain}.' must be a DNS name")
        return BaseUrlTemplate(template, scheme, f"{PLACEHOLDER}.{suffix}", port)
    if not (_is_dns_name(host) or _is_ip_address(host)):
        raise refuse("the host must be a DNS name or an IP address")
    if PLACEHOLDER not in parts.path.split("/"):
        raise refuse("'{subdomain}' must be the first host label or a whole path segment")
    return BaseUrlTemplate(template, scheme, host, port)


def _is_dns_name(host: str) -> bool:
    return bool(host) and all(_LABEL.fullmatch(label) for label in host.split("."))


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class QualtricsBaseUrl:
    """A validated base URL: the token URL and every API URL hang off it and nothing else."""

    url: str
    scheme: str
    host: str
    port: int | None

    @property
    def token_url(self) -> httpx.URL:
        return self._join(TOKEN_PATH)

    def api_url(self, *segments: str) -> httpx.URL:
        """`{base}/API/v3/<segments>`; callers pass constants and validated ids only."""
        return self._join("/".join((API_PREFIX, *segments)))

    def _join(self, path: str) -> httpx.URL:
        return _joined(self.url, path, (self.scheme, self.host, self.port))


# Parsed and checked once per URL: a worker sends every response of a survey to the same one
# (httpx.URL is immutable, so one object serves every request).
@lru_cache(maxsize=4096)
def _joined(base: str, path: str, origin: tuple[str, str, int | None]) -> httpx.URL:
    url = httpx.URL(base + path)
    if _origin(url) != origin:
        # Unreachable with validated segments; kept as the last line of defence.
        raise ValueError(f"refusing to build a Qualtrics URL off {origin[1]!r}")
    return url


def build_base_url(subdomain: str, template: str = DEFAULT_BASE_URL_TEMPLATE) -> QualtricsBaseUrl:
    """Validate `subdomain` and the template, and return the base URL they make."""
    return BaseUrlTemplate.parse(template).build(subdomain)


def _checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ValueError(f"{what} {str(value)[:80]!r} does not match {pattern.pattern!r}")
    return value


def valid_survey_id(value: str) -> str:
    """`value` if it is a Qualtrics survey id (`SV_` + 11-15 letters or digits)."""
    return _checked(SURVEY_ID, value, "survey id")


def valid_block_id(value: str) -> str:
    """`value` if it is a Qualtrics block id (`BL_` + 11-15 letters or digits)."""
    return _checked(BLOCK_ID, value, "block id")


def valid_question_id(value: str) -> str:
    """`value` if it is a Qualtrics question id (`QID` + digits, as Qualtrics assigns them)."""
    return _checked(QUESTION_ID, value, "question id")
