"""boto3 sessions and clients, and the one path from a botocore error to the package's own.

Every client gets botocore's "standard" retry mode, so throttling and transient 5xx answers
are retried with backoff by botocore itself; what still fails reaches the user as an
AwsError that names the call and the cause, never as a botocore traceback. Every caller that
turns a botocore failure into words goes through `failure_of`, so an endpoint that answers
with an HTML error page reads the same everywhere: one line naming the operation and the status,
and a missing credential, profile or region says how to give one wherever it surfaces. The CLI's
boundary turns a failure that reached it into the package's own error with `error_of`.
Client types come from boto3-stubs, imported for the type checker only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from cfn_chainermn import __version__
from cfn_chainermn.errors import AwsError, CfnChainermnError, ConfigError

if TYPE_CHECKING:
    from boto3.session import Session
    from botocore.config import Config
    from mypy_boto3_autoscaling import AutoScalingClient
    from mypy_boto3_cloudformation import CloudFormationClient
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_iam import IAMClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef
    from mypy_boto3_service_quotas import ServiceQuotasClient
    from mypy_boto3_ssm import SSMClient

T = TypeVar("T")

# Throttling (Throttling, RequestLimitExceeded, ...) and 5xx are retried this many times in all.
MAX_ATTEMPTS = 10
# Fewer for advisory look-ups that must not hold up a command for a minute of backoff.
SERVICE_ATTEMPTS = {"service-quotas": 3}
# How long a message may be in the short form (preflight lines, console notices).
SHORT_LIMIT = 160

_NO_PERMISSION = "the credentials in use lack this permission; check the IAM policy of the role or user"
_EXPIRED = "the session credentials expired; refresh them (for example `aws sso login`)"
_THROTTLED = "AWS kept throttling this call after retries; wait a minute and run it again"
# Codes whose message alone leaves the user guessing; the hint says what to do.
_HINTS = {
    "AccessDenied": _NO_PERMISSION,
    "AccessDeniedException": _NO_PERMISSION,
    "UnauthorizedOperation": _NO_PERMISSION,
    "ExpiredToken": _EXPIRED,
    "ExpiredTokenException": _EXPIRED,
    "InvalidClientTokenId": "the access key is not valid in this account or partition; check AWS_PROFILE",
    "SignatureDoesNotMatch": "the secret key does not match the access key; check the credentials",
    "Throttling": _THROTTLED,
    "ThrottlingException": _THROTTLED,
    "RequestLimitExceeded": _THROTTLED,
}




def _own_words(exc: BaseException) -> tuple[str, bool] | None:
    """botocore's own errors that leave the user guessing: our words, and whether the fix is the
    user's setup (credentials, profile, region: a usage error) rather than AWS's answer."""
    from botocore import exceptions as bexc

    if isinstance(exc, bexc.NoCredentialsError):
        return "no AWS credentials found; run `aws configure`, set AWS_PROFILE, or pass --profile", True
    if isinstance(exc, bexc.ProfileNotFound):
        return f"{exc}; check --profile / AWS_PROFILE against ~/.aws/config", True
    if isinstance(exc, bexc.NoRegionError):
        return "no AWS region set; pass --region or set AWS_REGION", True
    if isinstance(exc, bexc.EndpointConnectionError):
        return f"cannot reach AWS: {exc}", False
    return None


@dataclass(frozen=True)
class Failure:
    """What a botocore failure says: AWS's code and message, the operation, the HTTP status (0: none).

    A BotoCoreError (no answer from AWS) has no code, only its message.

    `message` is always one line; an answer that was no AWS error (an HTML error page, an empty
    body: a proxy or a broken emulator) is described by its operation and status instead.
    """

    code: str
    message: str
    operation: str = ""
    status: int = 0
    hint: str = ""
    from_aws: bool = True  # False: the code is only the HTTP status, the message says so
    setup: bool = False  # no credentials, profile or region: the user's setup to fix, not AWS's answer

    def line(self, limit: int | None = None) -> str:
        """"Code: message" (the message alone when there is no AWS code), cut to `limit` characters."""
        message = self.message if limit is None else self.message[:limit]
        return f"{self.code}: {message}".rstrip(": ") if self.code and self.from_aws else message

    def explained(self) -> str:
        """The line, and the hint when the code has one."""
        return self.line() + (f" ({self.hint})" if self.hint else "")


def _not_aws(code: str, message: str, status: int) -> bool:
    """An answer without an AWS error in it: no code, a bare HTTP status as code, or markup as message."""
    return not code or code == str(status) or code == "Unknown" or message.startswith("<")


def failure_of(exc: BaseException) -> Failure:
    """The one reading of a ClientError (or any other of `botocore_errors`) that every message is built from."""
    import http.client

    response = getattr(exc, "response", None)
    response = response if isinstance(response, dict) else {}
    err = response.get("Error") or {}
    status = int((response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0)
    operation = str(getattr(exc, "operation_name", "") or "")
    code = str(err.get("Code", "") or "")
    if not response and (own := _own_words(exc)) is not None:
        return Failure("", own[0], operation, setup=own[1])
    if not response:  # not AWS's answer: botocore's own words on one line, without the body a parser error quotes
        words = [ln.strip() for ln in str(exc).splitlines() if not ln.strip().startswith(("<", "b'", 'b"'))]
        return Failure("", " ".join(w for w in words if w) or type(exc).__name__, operation)
    raw = str(err.get("Message", "") or "").strip()
    message = (raw.splitlines() or [""])[0].strip()
    if _not_aws(code, message, status):
        reason = http.client.responses.get(status, "") if status else ""
        where = f"{operation}: " if operation else ""
        what = f"HTTP {status}{' ' + reason if reason else ''}" if status else "an answer"
        return Failure(code or (str(status) if status else "Unknown"),
                       f"{where}{what} (the endpoint answered with an error page, not an AWS error)",
                       operation, status, from_aws=False)
    return Failure(code, message, operation, status, _HINTS.get(code, ""))


def botocore_errors() -> tuple[type[Exception], ...]:
    """What a boto3 call raises when it fails: AWS's answer, botocore's own errors, an unreadable answer."""
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    return (ClientError, BotoCoreError, ResponseParserError)


def error_of(exc: BaseException) -> CfnChainermnError | None:
    """The package's own error for a botocore failure (None for anything else): a ConfigError
    where the user's setup is missing something, else an AwsError in `failure_of`'s words."""
    try:
        errors = botocore_errors()
    except ImportError:  # pragma: no cover - boto3 is a dependency
        return None
    if not isinstance(exc, errors):
        return None
    failure = failure_of(exc)
    if failure.setup:
        return ConfigError(failure.explained())
    return AwsError(failure.explained(), code=failure.code, operation=failure.operation)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str((response.get("Error") or {}).get("Code", ""))
    return ""


def short_error(exc: BaseException) -> str:
    """"Code: first line of the message" (at most SHORT_LIMIT characters of it), for notices and lists."""
    return failure_of(exc).line(SHORT_LIMIT)


def aws_error(exc: BaseException, what: str) -> AwsError:
    """An AwsError naming the failed step, the AWS code and message, and a hint when one helps."""
    failure = failure_of(exc)
    return AwsError(f"{what}: {failure.explained()}", code=failure.code, operation=failure.operation)


@contextmanager
def mapped(what: str) -> Iterator[None]:
    """Turn a ClientError inside the block into an AwsError that says what was being done."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        raise aws_error(exc, what) from exc


def aws_call(operation: str, func: Callable[[], T]) -> T:
    """Run one boto3 call; any botocore failure becomes AwsError("<operation> failed: Code: message")."""
    try:
        return func()
    except botocore_errors() as exc:
        error = aws_error(exc, f"{operation} failed")
        error.operation = error.operation or operation
        raise error from exc


def botocore_config(max_attempts: int = MAX_ATTEMPTS) -> Config:
    """Standard retries (throttling included) and a user agent that names the tool."""
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        user_agent_extra=f"cfn-chainermn/{__version__}",
    )


def make_session(profile: str | None = None, region: str | None = None) -> Session:
    """A boto3 session; the region falls back to AWS_REGION, then the profile's region."""
    import boto3

    region = region or os.environ.get("AWS_REGION") or None
    return boto3.session.Session(profile_name=profile or None, region_name=region)


def client(session: Session, service: str, endpoint_url: str | None = None) -> Any:
    """A client of `service` with retries configured; `endpoint_url` points it at an emulator."""
    attempts = SERVICE_ATTEMPTS.get(service, MAX_ATTEMPTS)
    return session.client(service, endpoint_url=endpoint_url or None, config=botocore_config(attempts))  # type: ignore[call-overload]


def region_of(session: Session) -> str:
    """The session's region, or a usage error that says how to set one."""
    region = session.region_name
    if not region:
        raise ConfigError("region: no AWS region set; pass --region or set AWS_REGION")
    return str(region)


def delete_objects(s3: S3Client, bucket: str, objects: list[ObjectIdentifierTypeDef], **owner: str) -> str:
    """DeleteObjects in batches of 1000 (its limit); "" or the first refusal, as "KEY: Code Message".

    `owner` is ExpectedBucketOwner=... where the bucket's name is predictable.
    """
    for start in range(0, len(objects), 1000):
        result = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects[start:start + 1000], "Quiet": True},
                                   **owner)  # type: ignore[arg-type]
        errors = result.get("Errors", [])
        if errors:
            first = errors[0]
            return f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip()
    return ""


@dataclass
class Aws:
    """One session and endpoint for a command; clients are made once, on first use."""

    session: Session
    endpoint_url: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    @property
    def region(self) -> str:
        return region_of(self.session)

    @overload
    def client(self, service: Literal["cloudformation"]) -> CloudFormationClient: ...
    @overload
    def client(self, service: Literal["ec2"]) -> EC2Client: ...
    @overload
    def client(self, service: Literal["s3"]) -> S3Client: ...
    @overload
    def client(self, service: Literal["autoscaling"]) -> AutoScalingClient: ...
    @overload
    def client(self, service: Literal["service-quotas"]) -> ServiceQuotasClient: ...
    @overload
    def client(self, service: Literal["ssm"]) -> SSMClient: ...
    @overload
    def client(self, service: Literal["iam"]) -> IAMClient: ...
    @overload
    def client(self, service: str) -> Any: ...

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client(self.session, service, self.endpoint_url)
        return self._clients[service]

    def account_id(self) -> str:
        """The account the credentials belong to (names the staging bucket)."""
        with mapped("looking up the AWS account (sts:GetCallerIdentity)"):
            return str(self.client("sts").get_caller_identity()["Account"])


def connect(profile: str | None, region: str | None, endpoint_url: str | None) -> Aws:
    """The AWS access of one command: a session for `profile` and `region`, clients for `endpoint_url`."""
    return Aws(make_session(profile, region), endpoint_url)
