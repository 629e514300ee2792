"""boto3 sessions and clients, and botocore errors turned into the package's own.

Every client gets botocore's "standard" retry mode, so throttling and transient 5xx answers
are retried with backoff by botocore itself; what still fails reaches the user as an
AwsError that names the call and the cause, never as a botocore traceback.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cfn_chainermn import __version__
from cfn_chainermn.errors import AwsError, ConfigError

# Throttling (Throttling, RequestLimitExceeded, ...) and 5xx are retried this many times in all.
MAX_ATTEMPTS = 10
# Fewer for advisory look-ups that must not hold up a command for a minute of backoff.
SERVICE_ATTEMPTS = {"service-quotas": 3}

# Codes whose message alone leaves the user guessing; the hint says what to do.
_HINTS = {
    "AccessDenied": "the credentials in use lack this permission; check the IAM policy of the role or user",
    "AccessDeniedException": "the credentials in use lack this permission; check the IAM policy of the role or user",
    "UnauthorizedOperation": "the credentials in use lack this permission; check the IAM policy of the role or user",
    "ExpiredToken": "the session credentials expired; refresh them (for example `aws sso login`)",
    "ExpiredTokenException": "the session credentials expired; refresh them (for example `aws sso login`)",
    "InvalidClientTokenId": "the access key is not valid in this account or partition; check AWS_PROFILE",
    "SignatureDoesNotMatch": "the secret key does not match the access key; check the credentials",
    "Throttling": "AWS kept throttling this call after retries; wait a minute and run it again",
    "ThrottlingException": "AWS kept throttling this call after retries; wait a minute and run it again",
    "RequestLimitExceeded": "AWS kept throttling this call after retries; wait a minute and run it again",
}


def botocore_config(max_attempts: int = MAX_ATTEMPTS) -> Any:
    """Standard retries (throttling included) and a user agent that names the tool."""
    from botocore.config import Config

    return Config(
        retries={"mode": "standard", "max_attempts": max_attempts},
        user_agent_extra=f"cfn-chainermn/{__version__}",
    )


def make_session(profile: str | None = None, region: str | None = None) -> Any:
    """A boto3 session; the region falls back to AWS_REGION, then the profile's region."""
    import boto3

    region = region or os.environ.get("AWS_REGION") or None
    return boto3.session.Session(profile_name=profile or None, region_name=region)


def client(session: Any, service: str, endpoint_url: str | None = None) -> Any:
    """A client of `service` with retries configured; `endpoint_url` points it at an emulator."""
    attempts = SERVICE_ATTEMPTS.get(service, MAX_ATTEMPTS)
    return session.client(service, endpoint_url=endpoint_url or None, config=botocore_config(attempts))


def region_of(session: Any) -> str:
    """The session's region, or a usage error that says how to set one."""
    region = session.region_name
    if not region:
        raise ConfigError("region: no AWS region set; pass --region or set AWS_REGION")
    return str(region)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def delete_objects(s3: Any, bucket: str, objects: list[dict[str, str]], **owner: str) -> str:
    """DeleteObjects in batches of 1000 (its limit); "" or the first refusal, as "KEY: Code Message".

    `owner` is ExpectedBucketOwner=... where the bucket's name is predictable.
    """
    for start in range(0, len(objects), 1000):
        result = s3.delete_objects(Bucket=bucket, Delete={"Objects": objects[start:start + 1000], "Quiet": True},
                                   **owner)
        errors = result.get("Errors", [])
        if errors:
            first = errors[0]
            return f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip()
    return ""


def short_error(exc: BaseException) -> str:
    """"Code: first line of the message", without the HTML some endpoints return on a 5xx."""
    response = getattr(exc, "response", None) or {}
    err = response.get("Error", {}) if isinstance(response, dict) else {}
    code = str(err.get("Code", "")) or type(exc).__name__
    message = str(err.get("Message", "")) if err else str(exc)
    first = (message.strip().splitlines() or [""])[0]
    if first.startswith("<"):
        first = "the endpoint answered with an error page"
    return f"{code}: {first[:160]}".rstrip(": ")


def aws_error(exc: BaseException, what: str) -> AwsError:
    """An AwsError naming the failed step, the AWS code and message, and a hint when one helps."""
    response = getattr(exc, "response", None) or {}
    err = response.get("Error", {}) if isinstance(response, dict) else {}
    code = str(err.get("Code", "")) or type(exc).__name__
    message = str(err.get("Message", "")) or str(exc)
    hint = _HINTS.get(code)
    text = f"{what}: {code}: {message}" + (f" ({hint})" if hint else "")
    operation = str(getattr(exc, "operation_name", "") or "")
    return AwsError(text, code=code, operation=operation)


@contextmanager
def mapped(what: str) -> Iterator[None]:
    """Turn a ClientError inside the block into an AwsError that says what was being done."""
    from botocore.exceptions import ClientError

    try:
        yield
    except ClientError as exc:
        raise aws_error(exc, what) from exc


@dataclass
class Aws:
    """One session and endpoint for a command; clients are made once, on first use."""

    session: Any
    endpoint_url: str | None = None
    _clients: dict[str, Any] = field(default_factory=dict)

    @property
    def region(self) -> str:
        return region_of(self.session)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = client(self.session, service, self.endpoint_url)
        return self._clients[service]

    def account_id(self) -> str:
        """The account the credentials belong to (names the staging bucket)."""
        with mapped("looking up the AWS account (sts:GetCallerIdentity)"):
            return str(self.client("sts").get_caller_identity()["Account"])
