"""The staging bucket: where every template goes (the agent inside puts it over the inline limit),
and only ever into a bucket of this account."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY
from stack_helpers import ACCOUNT, NAME, STAGING, queue_template_upload

from cfn_chainermn.errors import CfnChainermnError
from cfn_chainermn.stack import staging


def test_a_template_goes_under_its_content_hash_into_the_existing_bucket(stubbed: Any) -> None:
    template = '{"Resources": {}}'
    url = queue_template_upload(stubbed, template, new_bucket=False)  # head_bucket, then put_object
    assert staging.Stager(stubbed).template(NAME, template) == url
    assert url.startswith(f"https://{STAGING}.s3.us-east-1.amazonaws.com/templates/") and url.endswith("/demo.json")


def test_the_first_template_creates_the_bucket_encrypted_private_and_expiring(stubbed: Any) -> None:
    template = '{"Resources": {"A": {}}}'
    url = queue_template_upload(stubbed, template, new_bucket=True)  # the lifecycle and blocks are pinned there
    assert staging.Stager(stubbed).template(NAME, template) == url


# The bucket name is predictable: an attacker who makes it first must not receive the templates
# (the agent inside them) that CloudFormation reads with CAPABILITY_IAM, nor swap them.
NOT_OURS = (f"staging bucket {STAGING} exists but is not owned by account {ACCOUNT} or not readable with these "
            "credentials (another account owns the name?); check the credentials' s3 permissions (the name is "
            "fixed per account and region)")


def test_a_staging_bucket_of_another_account_gets_nothing(stubbed: Any) -> None:
    stubbed("sts").add_response("get_caller_identity", {"Account": ACCOUNT}, {})
    # S3 answers 403 to ExpectedBucketOwner when another account owns the bucket
    stubbed("s3").add_client_error("head_bucket", "403", "Forbidden", 403,
                                   expected_params={"Bucket": STAGING, "ExpectedBucketOwner": ACCOUNT})
    with pytest.raises(CfnChainermnError) as caught:
        staging.Stager(stubbed).template(NAME, "{}")  # any put_object would fail as an unexpected call
    assert str(caught.value) == NOT_OURS


def test_a_staging_bucket_made_by_another_account_meanwhile_gets_nothing(stubbed: Any) -> None:
    s3 = stubbed("s3")
    s3.add_client_error("head_bucket", "404", "Not Found", 404,
                        expected_params={"Bucket": STAGING, "ExpectedBucketOwner": ACCOUNT})
    s3.add_client_error("create_bucket", "BucketAlreadyExists", "The requested bucket name is not available.",
                        409, expected_params={"Bucket": STAGING})
    with pytest.raises(CfnChainermnError) as caught:
        staging.ensure_bucket(stubbed.client("s3"), STAGING, "us-east-1", ACCOUNT)
    assert str(caught.value) == NOT_OURS


def test_every_upload_names_the_owner(stubbed: Any, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text("{}")
    stubbed("s3").add_client_error("put_object", "AccessDenied", "Access Denied", 403, expected_params={
        "Bucket": STAGING, "Key": ANY, "Body": b"{}", "ServerSideEncryption": "AES256",
        "ExpectedBucketOwner": ACCOUNT})
    with pytest.raises(CfnChainermnError, match=f"uploading t.json to s3://{STAGING}"):
        staging.upload_file(stubbed.client("s3"), STAGING, "templates/", path, owner=ACCOUNT)
