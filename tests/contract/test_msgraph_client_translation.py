"""The pure parts of graph.msgraph_pipeline, on real SDK errors: Retry-After and the error table.

The end-to-end paths (over HTTPS, through the SDK) are in test_msgraph_client.py; this file pins
the table for codes and statuses the emulator has no reason to produce.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from msgraph_beta.generated.models.o_data_errors.main_error import MainError
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError

from b2ckeys.graph.client import (
    ConcurrentWrite,
    Forbidden,
    GraphConnection,
    GraphError,
    InvalidRequest,
    KeySetAlreadyExists,
    KeySetNotFound,
    NoActiveKey,
    Throttled,
    TransientError,
    Unauthorized,
)
from b2ckeys.graph.msgraph_pipeline import (
    REQUIRED_PERMISSION,
    _translate_api_error,
    _translate_transport_error,
    parse_retry_after,
)
from b2ckeys.secret import SecretStr

# A connection needs exactly one credential; the translations never use it.
CONN = GraphConnection(
    tenant_id="t.onmicrosoft.com", client_id="app-123", client_secret=SecretStr("unused")
)
NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        ("0", 0.0),
        ("2.5", 2.5),
        ("5,5", 5.0),
        (format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True), 90.0),
        (format_datetime(datetime.fromtimestamp(NOW - 90, UTC), usegmt=True), 0.0),
        ("soon", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header, now=NOW) == seconds


def odata_error(status: int, code: str | None, headers: dict[str, str] | None = None) -> ODataError:
    error = ODataError(error=MainError(code=code, message=f"graph says {code}"))
    error.response_status_code = status
    error.response_headers = httpx.Headers(headers or {})
    return error


@pytest.mark.parametrize(
    ("status", "code", "write", "expected"),
    [
        (404, "AADB2C90073", False, KeySetNotFound),
        (400, "AADB2C90073", False, KeySetNotFound),  # the code decides, not the status
        (404, "Request_ResourceNotFound", False, KeySetNotFound),
        (409, "AADB2C95028", True, KeySetAlreadyExists),
        (400, "AADB2C95028", True, KeySetAlreadyExists),
        (409, "AADB2C95053", True, ConcurrentWrite),
        (404, "AADB2C90019", False, NoActiveKey),
        (400, "AADB2C90220", False, NoActiveKey),
        (400, "AADB2C90213", True, InvalidRequest),
        (409, "AADB2C90180", True, InvalidRequest),
        (401, "InvalidAuthenticationToken", False, Unauthorized),
        (403, "Authorization_RequestDenied", False, Forbidden),
        (429, "TooManyRequests", True, Throttled),
        (400, "AADB2C95043", False, Throttled),
        (500, "InternalServerError", False, TransientError),
        (503, "ServiceUnavailable", True, TransientError),
    ],
)
def test_error_table(status: int, code: str, write: bool, expected: type[GraphError]) -> None:
    translated = _translate_api_error(odata_error(status, code), write=write, conn=CONN)
    assert type(translated) is expected
    assert translated.code == code
    assert translated.status == status
    assert f"graph says {code}" in str(translated)


def test_a_failed_write_with_5xx_has_an_unknown_outcome_and_a_read_does_not() -> None:
    write = _translate_api_error(odata_error(503, None), write=True, conn=CONN)
    read = _translate_api_error(odata_error(503, None), write=False, conn=CONN)
    assert isinstance(write, TransientError)
    assert write.outcome_unknown
    assert isinstance(read, TransientError)
    assert not read.outcome_unknown


def test_a_read_503_with_retry_after_left_by_the_sdk_is_throttled() -> None:
    error = _translate_api_error(
        odata_error(503, None, {"Retry-After": "120"}), write=False, conn=CONN
    )
    assert isinstance(error, Throttled)
    assert error.retry_after == 120.0


def test_throttled_carries_retry_after_and_falls_back_without_one() -> None:
    with_header = _translate_api_error(
        odata_error(429, None, {"Retry-After": "42"}), write=False, conn=CONN
    )
    without = _translate_api_error(odata_error(429, None), write=False, conn=CONN)
    assert isinstance(with_header, Throttled)
    assert with_header.retry_after == 42.0
    assert isinstance(without, Throttled)
    assert without.retry_after > 0


def test_forbidden_names_the_missing_permission_and_the_app() -> None:
    error = _translate_api_error(
        odata_error(403, "Authorization_RequestDenied"), write=False, conn=CONN
    )
    assert REQUIRED_PERMISSION in str(error)
    assert "app-123" in str(error)


def test_request_id_comes_from_the_response_header() -> None:
    error = _translate_api_error(
        odata_error(400, "AADB2C", {"request-id": "rid-1"}), write=True, conn=CONN
    )
    assert error.request_id == "rid-1"


@pytest.mark.parametrize(
    ("failure", "write", "unknown"),
    [
        (httpx.ReadTimeout("slow"), True, True),
        (httpx.RemoteProtocolError("dropped"), True, True),
        (httpx.ReadError("reset"), True, True),
        (httpx.ConnectError("refused"), True, False),  # never reached the server
        (httpx.ConnectTimeout("no route"), True, False),
        (httpx.ReadTimeout("slow"), False, False),  # reads have no outcome to lose
    ],
)
def test_transport_failures(failure: httpx.HTTPError, write: bool, unknown: bool) -> None:
    error = _translate_transport_error(failure, write=write)
    assert isinstance(error, TransientError)
    assert error.outcome_unknown is unknown
