"""The subdomain validator and URL builder: the service's SSRF boundary (reliability §5.5)."""

import string

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.qualtrics.urls import (
    DEFAULT_BASE_URL_TEMPLATE,
    BaseUrlTemplate,
    InvalidBaseUrlTemplate,
    InvalidSubdomain,
    build_base_url,
    valid_block_id,
    valid_question_id,
    valid_survey_id,
    validate_subdomain,
)

# Inputs an attacker (or a careless paste) might try, and why each must be refused.
SSRF_CORPUS = [
    "",  # empty
    "evil.com#",  # fragment swallows the suffix: https://evil.com#.qualtrics.com
    "evil.com?",  # query swallows the suffix
    "evil.com/",  # path swallows the suffix
    "a.b",  # extra label
    "..",
    ".",
    "iad1.",  # trailing dot: another name for a different zone apex
    ".iad1",
    "cornell.ca1",  # brand host: two labels (use the data center id)
    "x@evil.com",  # userinfo
    "@evil.com",
    "iad1@",
    "127.0.0.1",  # IPv4 literal
    "[::1]",  # IPv6 literal
    "::1",
    "localhost:80",  # port
    "iad1:443",
    "a/b",
    "a\\b",  # backslash: some parsers treat it as a path separator
    "%2e",  # percent-encoding
    "iad1%00",
    "%69ad1",
    " a",  # leading whitespace
    "a ",
    "a b",
    "iad1\t",
    "iad1\n",  # `$` in a Python regex matches before a trailing newline
    "iad1\r\nHost: evil.com",  # header injection
    "iad1\x00",
    "\uff41",  # fullwidth a (NFKC-normalises to "a")
    "iad\uff11",  # fullwidth digit one
    "\u212a",  # Kelvin sign: .lower() is ASCII "k"
    "İad1",  # dotted capital I: .lower() grows a combining dot
    "bücher",  # IDN
    "xn--bcher-kva",  # punycode A-label: refused (documented in urls.py)
    "xn--",
    "ab--c",  # reserved hyphens in positions 3 and 4
    "a" * 64,  # over the 63-character label limit
    "-iad1",  # leading hyphen
    "iad1-",  # trailing hyphen
    "-",
    "_iad1",  # underscore
    "iad_1",
    "*",
    "iad1;",
    "{subdomain}",
    "\u0661",  # Arabic-Indic digit one
]


class TestValidateSubdomain:
    @pytest.mark.parametrize("raw", SSRF_CORPUS)
    def test_refuses(self, raw: str) -> None:
        with pytest.raises(InvalidSubdomain):
            validate_subdomain(raw)

    @pytest.mark.parametrize(
        ("raw", "label"),
        [
            ("iad1", "iad1"),
            ("FRA1", "fra1"),
            ("g1-iad", "g1-iad"),
            ("ca1", "ca1"),
            ("a", "a"),
            ("0", "0"),
            ("127", "127"),
            ("a" * 63, "a" * 63),
            ("a-b-c", "a-b-c"),
            ("a--b", "a--b"),  # double hyphen is fine outside positions 3-4
        ],
    )
    def test_accepts_and_lowercases(self, raw: str, label: str) -> None:
        assert validate_subdomain(raw) == label

    def test_is_a_value_error_with_a_clear_message(self) -> None:
        with pytest.raises(ValueError, match="not a single DNS label"):
            validate_subdomain("evil.com#")

    def test_message_caps_long_input(self) -> None:
        with pytest.raises(InvalidSubdomain) as caught:
            validate_subdomain("x." * 5000)
        assert len(str(caught.value)) < 400


labels = st.from_regex(r"\A[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z").filter(
    lambda label: label[2:4] != "--"
)


class TestProperties:
    @given(labels)
    def test_any_accepted_label_gives_exactly_its_host(self, label: str) -> None:
        base = build_base_url(label)
        url = httpx.URL(base.url)
        assert url.scheme == "https"
        assert url.raw_host.decode() == f"{label}.qualtrics.com"
        assert url.port is None
        assert base.api_url("whoami").raw_host == url.raw_host
        assert base.token_url.raw_host == url.raw_host

    @given(labels)
    def test_case_does_not_matter(self, label: str) -> None:
        assert validate_subdomain(label.upper()) == label

    @given(
        st.text(),
        st.sampled_from([*".@:/\\%#?[] \t\r\n\x00", "\uff41", "é", "\u212a", "\u0661"]),
        st.text(),
    )
    def test_any_text_with_a_forbidden_character_is_refused(
        self, before: str, forbidden: str, after: str
    ) -> None:
        with pytest.raises(InvalidSubdomain):
            validate_subdomain(before + forbidden + after)

    @given(st.text())
    def test_accepted_text_is_always_a_plain_label(self, raw: str) -> None:
        try:
            label = validate_subdomain(raw)
        except InvalidSubdomain:
            return
        assert label == raw.lower()
        assert raw.isascii()
        assert set(label) <= set(string.ascii_lowercase + string.digits + "-")
        assert build_base_url(label).host == f"{label}.qualtrics.com"


class TestBuildBaseUrl:
    def test_default_template(self) -> None:
        base = build_base_url("IAD1")
        assert base.url == "https://iad1.qualtrics.com"
        assert str(base.token_url) == "https://iad1.qualtrics.com/oauth2/token"
        assert (
            str(base.api_url("surveys", "SV_5vaK6JpGtrf2Ldz", "responses"))
            == "https://iad1.qualtrics.com/API/v3/surveys/SV_5vaK6JpGtrf2Ldz/responses"
        )
        assert DEFAULT_BASE_URL_TEMPLATE == "https://{subdomain}.qualtrics.com"

    def test_local_fake_with_subdomain_in_the_path(self) -> None:
        base = build_base_url("iad1", "http://127.0.0.1:8099/{subdomain}")
        assert base.url == "http://127.0.0.1:8099/iad1"
        assert str(base.token_url) == "http://127.0.0.1:8099/iad1/oauth2/token"
        assert str(base.api_url("whoami")) == "http://127.0.0.1:8099/iad1/API/v3/whoami"
        assert (base.scheme, base.host, base.port) == ("http", "127.0.0.1", 8099)

    def test_other_host_suffix_and_port(self) -> None:
        base = build_base_url("eu", "https://{subdomain}.fake.test:8443/")
        assert base.url == "https://eu.fake.test:8443"
        assert (base.host, base.port) == ("eu.fake.test", 8443)

    def test_ipv6_and_named_hosts_for_path_templates(self) -> None:
        assert build_base_url("iad1", "http://[::1]:8099/{subdomain}").host == "::1"
        assert build_base_url("iad1", "http://fake-qualtrics:8099/q/{subdomain}").url == (
            "http://fake-qualtrics:8099/q/iad1"
        )

    def test_explicit_default_port_is_the_same_origin(self) -> None:
        base = build_base_url("iad1", "https://{subdomain}.qualtrics.com:443")
        assert (base.scheme, base.host, base.port) == ("https", "iad1.qualtrics.com", None)

    @pytest.mark.parametrize("raw", ["evil.com#", "x@evil.com", "a/b", "..", "localhost:80"])
    def test_path_template_refuses_the_same_corpus(self, raw: str) -> None:
        with pytest.raises(InvalidSubdomain):
            build_base_url(raw, "http://127.0.0.1:8099/{subdomain}")

    @pytest.mark.parametrize(
        "template",
        [
            "https://qualtrics.com",  # no placeholder
            "https://{subdomain}.{subdomain}.qualtrics.com",  # twice
            "https://{subdomain}.qualtrics.com/{other}",  # other braces
            "ftp://{subdomain}.qualtrics.com",  # scheme
            "//{subdomain}.qualtrics.com",  # no scheme
            "https://x{subdomain}.qualtrics.com",  # not a whole label
            "https://qualtrics.{subdomain}.com",  # not the first label
            "https://{subdomain}",  # the label would be the whole host (e.g. "2130706433")
            "https://user:pw@{subdomain}.qualtrics.com",  # userinfo
            "https://{subdomain}@evil.com",  # placeholder in userinfo
            "https://{subdomain}.qualtrics.com?x=1",  # query
            "https://{subdomain}.qualtrics.com#f",  # fragment
            "http://127.0.0.1:8099/?s={subdomain}",  # placeholder in the query
            "http://127.0.0.1:8099/x{subdomain}",  # not a whole path segment
            "http:///{subdomain}",  # no host
            "https://{subdomain}.qualtrics.com:99999",  # bad port
            "https://{subdomain}.qualtrics .com",  # whitespace
            "https://{subdomain}.bücher.de",  # non-ASCII
            "https://{subdomain}.under_score.com",  # not a DNS name
            "http://x}.test/{subdomain}",  # stray brace
            "http://bad_host:8099/{subdomain}",  # fixed host that is not a DNS name
        ],
    )
    def test_refuses_unsafe_templates(self, template: str) -> None:
        with pytest.raises(InvalidBaseUrlTemplate):
            BaseUrlTemplate.parse(template)

    def test_origin_check_holds_for_every_corpus_entry_and_template(self) -> None:
        templates = [DEFAULT_BASE_URL_TEMPLATE, "http://127.0.0.1:8099/{subdomain}"]
        for template in templates:
            for raw in SSRF_CORPUS:
                with pytest.raises(InvalidSubdomain):
                    build_base_url(raw, template)


class TestIds:
    @pytest.mark.parametrize(
        "value", ["SV_5vaK6JpGtrf2Ldz", "SV_abcdefghijk", "SV_abcdefghijklmno"]
    )
    def test_survey_ids(self, value: str) -> None:
        assert valid_survey_id(value) == value

    @pytest.mark.parametrize(
        "value",
        [
            "",
            "SV_",
            "SV_short",
            "SV_abcdefghijklmnop",  # 16 characters
            "sv_5vaK6JpGtrf2Ldz",
            "SV_5vaK6JpGtrf2Ld/",
            "SV_5vaK6JpGtrf2Ldz/../../whoami",
            "../SV_5vaK6JpGtrf2Ldz",
            "SV_5vaK6JpGtrf2Ldz\n",
            "SV_5vaK6JpGtrf2Ldz?x=1",
            "SV_5vaK6JpGtrf2Ld%2F",
            "SV_5vaK6JpGtrf2Ldé",
        ],
    )
    def test_bad_survey_ids(self, value: str) -> None:
        with pytest.raises(ValueError, match="survey id"):
            valid_survey_id(value)

    @pytest.mark.parametrize("value", ["QID1", "QID42", "QID123456"])
    def test_question_ids(self, value: str) -> None:
        assert valid_question_id(value) == value

    @pytest.mark.parametrize(
        "value", ["QID", "QIDx", "qid1", "QID1/..", "QID\u0661", "QID1\n", "1"]
    )
    def test_bad_question_ids(self, value: str) -> None:
        with pytest.raises(ValueError, match="question id"):
            valid_question_id(value)

    def test_block_ids(self) -> None:
        assert valid_block_id("BL_0Di21uQq3eUD1D7") == "BL_0Di21uQq3eUD1D7"
        with pytest.raises(ValueError, match="block id"):
            valid_block_id("BL_0Di21uQq3eUD1D7&x=1")
