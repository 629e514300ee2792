"""The staging bucket: templates too big to pass inline (every template is, with the agent inside).

One bucket per account and region, created on first use: encrypted, public access blocked, and
used only while this account owns it (every call names it as ExpectedBucketOwner: the name is
predictable, and CloudFormation reads the template, agent included, from here).
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfn_chainermn.aws import Aws, aws_error, error_code, mapped
from cfn_chainermn.errors import CfnChainermnError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import BucketLifecycleConfigurationTypeDef


TEMPLATE_PREFIX = "templates/"
TEMPLATE_DAYS = 7
# CloudFormation reads a TemplateURL only while it creates or updates the stack, so staged
# templates go after a week (nodes booting later read the template with GetTemplate).
LIFECYCLE: BucketLifecycleConfigurationTypeDef = {"Rules": [
    {"ID": "templates-expire", "Status": "Enabled", "Filter": {"Prefix": TEMPLATE_PREFIX},
     "Expiration": {"Days": TEMPLATE_DAYS}},
    {"ID": "abort-incomplete-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
]}


def bucket_name(account: str, region: str) -> str:
    return f"cfn-chainermn-staging-{account}-{region}"


def ensure_bucket(s3: S3Client, bucket: str, region: str, owner: str) -> None:
    """Create the bucket if missing, encrypted and private; refuse one owned by someone else.

    The name is predictable, so anyone could make it first and receive (or swap) the templates,
    agent included, that CloudFormation reads from it: every call on the bucket names `owner`
    (this account) as ExpectedBucketOwner, and S3 answers 403 when another account owns it.
    """
    from botocore.exceptions import ClientError

    owned: dict[str, Any] = {"Bucket": bucket, "ExpectedBucketOwner": owner}
    try:
        s3.head_bucket(**owned)
        return
    except ClientError as exc:
        code = error_code(exc)
        if code in ("403", "AccessDenied", "Forbidden"):
            raise _not_ours(bucket, owner) from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise aws_error(exc, f"checking staging bucket {bucket}") from exc
    with mapped(f"creating staging bucket {bucket}"):
        location: dict[str, Any] = ({} if region == "us-east-1"
                                    else {"CreateBucketConfiguration": {"LocationConstraint": region}})
        try:
            s3.create_bucket(Bucket=bucket, **location)  # CreateBucket takes no ExpectedBucketOwner
        except ClientError as exc:
            if error_code(exc) == "BucketAlreadyExists":  # made by another account since head_bucket
                raise _not_ours(bucket, owner) from None
            raise
        s3.put_bucket_encryption(**owned, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
        s3.put_public_access_block(**owned, PublicAccessBlockConfiguration={
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True})
        s3.put_bucket_lifecycle_configuration(**owned, LifecycleConfiguration=LIFECYCLE)


def _not_ours(bucket: str, owner: str) -> CfnChainermnError:
    return CfnChainermnError(f"staging bucket {bucket} exists but is not owned by account {owner} or not "
                             "readable with these credentials (another account owns the name?); check the "
                             "credentials' s3 permissions (the name is fixed per account and region)")


def upload_file(s3: S3Client, bucket: str, prefix: str, path: Path, *, owner: str) -> str:
    """Upload under a content-hash folder (the file name is kept: pip needs it); returns the key.

    Only into a bucket of account `owner`: S3 refuses the write (403) if another account owns it.
    """
    data = path.read_bytes()
    key = f"{prefix}{hashlib.sha256(data).hexdigest()[:16]}/{path.name}"
    with mapped(f"uploading {path.name} to s3://{bucket}"):
        s3.put_object(Bucket=bucket, Key=key, Body=data, ServerSideEncryption="AES256", ExpectedBucketOwner=owner)
    return key


class Stager:
    """Uploads into the account's staging bucket, creating it on first use; never into another account's."""

    def __init__(self, aws: Aws) -> None:
        self.aws = aws
        self._bucket = ""
        self._account = ""

    @property
    def bucket(self) -> str:
        if not self._bucket:
            account = self.aws.account_id()
            name = bucket_name(account, self.aws.region)
            ensure_bucket(self.aws.client("s3"), name, self.aws.region, account)
            self._bucket, self._account = name, account
        return self._bucket

    def _upload(self, prefix: str, path: Path) -> str:
        bucket = self.bucket
        return upload_file(self.aws.client("s3"), bucket, prefix, path, owner=self._account)

    def template(self, stack_name: str, body: str) -> str:
        """Upload a template body; returns the TemplateURL CloudFormation reads it from."""
        with tempfile.TemporaryDirectory(prefix="cfn-chainermn-tpl-") as tmp:
            path = Path(tmp) / f"{stack_name}.json"
            path.write_text(body, encoding="utf-8")
            key = self._upload(TEMPLATE_PREFIX, path)
        return f"https://{self.bucket}.s3.{self.aws.region}.amazonaws.com/{key}"
