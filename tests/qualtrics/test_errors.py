"""The error tree itself: retryable flags, Retry-After parsing, sanitising, repr and pickling."""

import pickle
from email.utils import formatdate

import pytest

from service.qualtrics.errors import (
    MAX_SNIPPET_CHARS,
    REDACTED,
    QualtricsAuthRejected,
    QualtricsBadRequest,
    QualtricsError,
    QualtricsForbidden,
    QualtricsHTTPError,
    QualtricsNotFound,
    QualtricsProtocolError,
    QualtricsRateLimited,
    QualtricsServerError,
    QualtricsTimeout,
    QualtricsTransportError,
    parse_retry_after,
    sanitize,
)

NOW = 1_750_000_000.0


class TestTree:
    @pytest.mark.parametrize(
        ("cls", "retryable"),
        [
            (QualtricsTransportError, True),
            (QualtricsTimeout, True),
            (QualtricsRateLimited, True),
            (QualtricsServerError, True),
            (QualtricsProtocolError, False),
            (QualtricsAuthRejected, False),
            (QualtricsForbidden, False),
            (QualtricsNotFound, False),
            (QualtricsBadRequest, False),
        ],
    )
    def test_retryable(self, cls: type[QualtricsError], retryable: bool) -> None:
        assert cls.retryable is retryable
        assert issubclass(cls, QualtricsError)

    def test_shape(self) -> None:
        assert issubclass(QualtricsTimeout, QualtricsTransportError)
        for cls in (
            QualtricsRateLimited,
            QualtricsServerError,
            QualtricsAuthRejected,
            QualtricsForbidden,
            QualtricsNotFound,
            QualtricsBadRequest,
        ):
            assert issubclass(cls, QualtricsHTTPError)
        assert not issubclass(QualtricsProtocolError, QualtricsHTTPError)


class TestReprAndPickle:
    def test_str_is_the_message_and_repr_names_the_fields(self) -> None:
        exc = QualtricsServerError(
            "Qualtrics failed",
            method="POST",
            path="/API/v3/surveys/SV_5vaK6JpGtrf2Ldz/responses",
            status=503,
            request_id="req-1",
            error_code="SURVEYS_1.2",
            instance_id="inst-9",
            body_snippet="<html>",
        )
        assert str(exc) == "Qualtrics failed"
        shown = repr(exc)
        assert shown.startswith("QualtricsServerError('Qualtrics failed', method='POST'")
        assert "status=503" in shown
        assert "instance_id='inst-9'" in shown
        assert "<html>" not in shown  # the snippet is for logs, not for every repr

    @pytest.mark.parametrize(
        "exc",
        [
            QualtricsRateLimited("slow down", method="GET", path="/p", status=429, retry_after=3.0),
            QualtricsServerError("boom", method="GET", path="/p", status=500, instance_id="i"),
            QualtricsNotFound("gone", method="GET", path="/p", status=404, error_code="QMST_2.2"),
            QualtricsTimeout("late", method="POST", path="/p"),
            QualtricsProtocolError("odd", method="GET", path="/p", status=302, body_snippet="x"),
        ],
    )
    def test_pickles(self, exc: QualtricsError) -> None:
        copy = pickle.loads(pickle.dumps(exc))  # noqa: S301 (our own bytes)
        assert type(copy) is type(exc)
        assert repr(copy) == repr(exc)
        assert copy.body_snippet == exc.body_snippet


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("header", "seconds"),
        [("7", 7.0), ("0", 0.0), (" 120 ", 120.0), ("1.5", 1.5)],
    )
    def test_delta_seconds(self, header: str, seconds: float) -> None:
        assert parse_retry_after(header, now=NOW) == seconds

    def test_http_date(self) -> None:
        header = formatdate(NOW + 30, usegmt=True)
        assert parse_retry_after(header, now=NOW) == pytest.approx(30.0)

    def test_http_date_in_the_past_is_zero(self) -> None:
        assert parse_retry_after(formatdate(NOW - 30, usegmt=True), now=NOW) == 0.0

    def test_http_date_with_minus_zero_offset_is_gmt(self) -> None:
        header = formatdate(NOW + 10).replace("+0000", "-0000")
        assert parse_retry_after(header, now=NOW) == pytest.approx(10.0)

    @pytest.mark.parametrize(
        "header", [None, "", "soon", "-5", "nan", "inf", "1e3", "0x10", "99999999999", "Fri,"]
    )
    def test_unusable(self, header: str | None) -> None:
        assert parse_retry_after(header, now=NOW) is None


class TestSanitize:
    def test_redacts_known_secrets(self) -> None:
        assert sanitize("a hunter2 b", secrets=["hunter2", ""]) == f"a {REDACTED} b"

    def test_redacts_token_fields_and_auth_headers(self) -> None:
        text = sanitize(
            '{"access_token": "abc.def", "Refresh_Token":"x"} Authorization: Bearer abc.def '
            "basic dXNlcjpwYXNz"
        )
        assert "abc.def" not in text
        assert '"x"' not in text
        assert "dXNlcjpwYXNz" not in text
        assert text.count(REDACTED) == 4

    def test_leaves_plain_words_after_basic_or_bearer(self) -> None:
        text = "Basic authentication is off; Bearer Tokens only"
        assert sanitize(text) == text

    def test_removes_control_characters_and_caps(self) -> None:
        text = sanitize("a\x00b\x1b[31mc\r\nd\te" + "z" * 5000)
        assert text.startswith("ab[31mc\nd\te")
        assert len(text) == MAX_SNIPPET_CHARS + 1
        assert text.endswith("…")
