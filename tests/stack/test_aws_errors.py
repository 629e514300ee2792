"""One error path for every botocore failure: AWS's code and message, or the operation and HTTP status
when the endpoint answered with something that is no AWS error (an HTML page, an empty body)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError, ProfileNotFound
from botocore.parsers import ResponseParserError
from stack_helpers import NAME, http_endpoint

from cfn_chainermn.aws import aws_call, aws_error, error_of, failure_of, short_error
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.errors import AwsError, ConfigError

PAGE = "<html><head><title>403 Forbidden</title></head>\n<body>nginx</body></html>\n"


def _client_error(code: str | None, message: str, status: int, operation: str) -> ClientError:
    response: dict[str, Any] = {"ResponseMetadata": {"HTTPStatusCode": status}}
    if code is not None:
        response["Error"] = {"Code": code, "Message": message}
    return ClientError(response, operation)  # type: ignore[arg-type]


def test_an_aws_error_keeps_its_code_message_and_hint() -> None:
    exc = _client_error("AccessDenied", "Access Denied", 403, "GetObject")
    failure = failure_of(exc)
    assert (failure.code, failure.message, failure.operation, failure.status) == (
        "AccessDenied", "Access Denied", "GetObject", 403)
    assert str(aws_error(exc, "reading x")) == ("reading x: AccessDenied: Access Denied (the credentials in use "
                                                "lack this permission; check the IAM policy of the role or user)")
    assert short_error(exc) == "AccessDenied: Access Denied"
    assert short_error(_client_error("Throttling", "", 400, "DescribeStacks")) == "Throttling"


@pytest.mark.parametrize("exc", [
    _client_error("403", PAGE, 403, "GetServiceQuota"),  # JSON services keep the page as the message
    _client_error(None, "", 403, "GetServiceQuota"),  # query services find no Error in it at all
    _client_error("", "", 403, "GetServiceQuota"),  # S3 GET: empty code and message
    _client_error("403", "Forbidden", 403, "GetServiceQuota"),  # botocore's generic reading of a page
])
def test_an_error_page_is_one_line_naming_the_operation_and_status(exc: ClientError) -> None:
    line = "GetServiceQuota: HTTP 403 Forbidden (the endpoint answered with an error page, not an AWS error)"
    assert short_error(exc) == line
    error = aws_error(exc, "reading the quota")
    assert str(error) == f"reading the quota: {line}"
    assert error.code == "403" and error.operation == "GetServiceQuota"


def test_a_parser_error_does_not_quote_the_body() -> None:
    exc = ResponseParserError("Unable to parse response (not well-formed), invalid XML received:\nb'<html>...'")
    with pytest.raises(AwsError) as info:
        aws_call("DescribeStacks", lambda: (_ for _ in ()).throw(exc))
    assert str(info.value) == ("DescribeStacks failed: Unable to parse response (not well-formed), invalid "
                               "XML received:")
    assert info.value.operation == "DescribeStacks"


NO_ANSWER = [  # botocore's own errors (no answer from AWS): our words, and whether the user's setup is the fix
    (NoCredentialsError(), "no AWS credentials found; run `aws configure`, set AWS_PROFILE, or pass --profile", True),
    (ProfileNotFound(profile="nope"),
     "The config profile (nope) could not be found; check --profile / AWS_PROFILE against ~/.aws/config", True),
    (NoRegionError(), "no AWS region set; pass --region or set AWS_REGION", True),
    (EndpointConnectionError(endpoint_url="https://s3.test"),
     'cannot reach AWS: Could not connect to the endpoint URL: "https://s3.test"', False),
]


@pytest.mark.parametrize(("exc", "line", "setup"), NO_ANSWER, ids=[type(e).__name__ for e, _, _ in NO_ANSWER])
def test_botocores_own_errors_say_what_to_do_wherever_they_surface(
        exc: Exception, line: str, setup: bool, capsys: pytest.CaptureFixture[str]) -> None:
    """The same words from failure_of, inside an aws_call's AwsError, and at the CLI's boundary,
    which exits 2 where the fix is the user's setup (a ConfigError) and 1 where AWS was out of reach."""
    failure = failure_of(exc)
    assert (failure.code, failure.line(), failure.explained(), failure.setup) == ("", line, line, setup)
    assert short_error(exc) == line[:160]
    error = error_of(exc)
    assert type(error) is (ConfigError if setup else AwsError) and str(error) == line
    with pytest.raises(AwsError) as info:
        aws_call("DescribeStacks", lambda: (_ for _ in ()).throw(exc))
    assert str(info.value) == f"DescribeStacks failed: {line}"

    @click.command()
    def boom() -> None:
        raise exc

    assert run_with_boundary(boom, []) == (2 if setup else 1)
    assert capsys.readouterr().err == f"error: {line}\n"


def test_error_of_maps_botocore_failures_only() -> None:
    """An AwsError with AWS's code and operation for a ClientError; None for what is no botocore
    failure (the boundary lets that one through as the bug it is)."""
    error = error_of(_client_error("AccessDenied", "Access Denied", 403, "GetObject"))
    assert isinstance(error, AwsError) and (error.code, error.operation) == ("AccessDenied", "GetObject")
    assert str(error).startswith("AccessDenied: Access Denied (the credentials in use lack this permission")
    assert error_of(ValueError("a bug")) is None


def test_the_boundary_prints_an_unmapped_client_error_as_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    @click.command()
    def boom() -> None:
        raise _client_error("403", PAGE, 403, "GetServiceQuota")

    assert run_with_boundary(boom, []) == 1
    assert capsys.readouterr().err == ("error: GetServiceQuota: HTTP 403 Forbidden (the endpoint answered with an "
                                       "error page, not an AWS error)\n")


@pytest.fixture
def page_endpoint() -> Iterator[str]:
    """An endpoint (a misconfigured proxy, say) that answers every request with an HTML 403 page."""
    with http_endpoint(lambda request: (403, "text/html", PAGE.encode())) as url:
        yield url


def test_a_command_against_an_error_page_says_what_it_did(page_endpoint: str, run_cli: Any) -> None:
    """Through real HTTP: botocore finds no AWS error in the page; the line names the call and status."""
    result = run_cli("stack", "status", NAME, "--endpoint-url", page_endpoint)
    assert result.code == 1
    assert result.err == (f"error: reading stack {NAME}: DescribeStacks: HTTP 403 Forbidden (the endpoint "
                          "answered with an error page, not an AWS error)\n")
