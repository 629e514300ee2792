"""The agent wheel a stack gets: built afresh from this checkout, or a given wheel of this very version."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY
from stack_helpers import ACCOUNT, NAME

from cfn_chainermn import __version__
from cfn_chainermn.errors import CfnChainermnError
from cfn_chainermn.stack import staging

STAGING = f"cfn-chainermn-staging-{ACCOUNT}-us-east-1"
GOOD = ["--key-name", "k", "--ssh-cidr", "203.0.113.7/32"]
WHEEL = f"cfn_chainermn-{__version__}-py3-none-any.whl"


def test_a_same_version_wheel_left_in_dist_is_not_staged_a_fresh_build_is(
        stubbed: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """dist/ may hold a wheel of this version built from older code; the nodes must get this code."""
    real = staging.project_root()
    assert real is not None
    root = tmp_path / "checkout"
    root.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "cfn_chainermn"):
        if (real / name).exists():
            (root / name).symlink_to(real / name)
    (root / "dist").mkdir()
    stale = root / "dist" / WHEEL
    shutil.copy(Path(__file__).with_name("stack_helpers.py"), stale)  # not even a zip: it must not be read
    monkeypatch.setattr(staging, "project_root", lambda: root)

    stubbed("sts").add_response("get_caller_identity", {"Account": ACCOUNT}, {})
    s3 = stubbed("s3")
    s3.add_response("head_bucket", {}, {"Bucket": STAGING, "ExpectedBucketOwner": ACCOUNT})
    s3.add_response("put_object", {}, {"Bucket": STAGING, "Key": ANY, "Body": ANY, "ServerSideEncryption": "AES256",
                                       "ExpectedBucketOwner": ACCOUNT})
    sent: dict[str, Any] = {}
    stubbed.client("s3").meta.events.register(
        "before-parameter-build.s3.PutObject", lambda params, **kw: sent.update(params))

    staged = staging.Stager(stubbed).agent_wheel()

    assert staged == f"{STAGING}/{sent['Key']}" and sent["Key"].endswith("/" + WHEEL)
    assert sent["Body"] != stale.read_bytes()
    built = tmp_path / "sent.whl"
    built.write_bytes(sent["Body"])
    names = zipfile.ZipFile(built).namelist()
    assert "cfn_chainermn/stack/cfn.py" in names and "cfn_chainermn/stack/staging.py" in names


BAD_WHEELS = [
    ("cfn_chainermn-0.0.9-py3-none-any.whl",
     f"is version 0.0.9 but this cfn-chainermn is {__version__}; the nodes must run the version that creates "
     f"the stack: give {WHEEL}"),
    (f"chainer-{__version__}-py3-none-any.whl", f"is a wheel of chainer, not cfn_chainermn; give {WHEEL}"),
    (f"cfn_chainermn-{__version__}-cp311-cp311-linux_x86_64.whl",
     f"is built for cp311-cp311-linux_x86_64, not py3-none-any; give {WHEEL}"),
    (f"cfn_chainermn-{__version__}.tar.gz", f"is not a wheel file name; give {WHEEL}"),
]


@pytest.mark.parametrize("command", [["create", *GOOD], ["update", "--workers", "3"]], ids=lambda c: c[0])
@pytest.mark.parametrize(("file_name", "why"), BAD_WHEELS, ids=[w[0] for w in BAD_WHEELS])
def test_a_given_wheel_of_another_version_package_or_platform_is_refused_before_any_aws_call(
        no_aws: None, run_cli: Any, tmp_path: Path, command: list[str], file_name: str, why: str) -> None:
    wheel = tmp_path / file_name
    wheel.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    result = run_cli("stack", command[0], NAME, *command[1:], "--agent-wheel", str(wheel), "--yes")
    assert (result.code, result.out) == (2, "")
    assert result.err == f"error: --agent-wheel: {file_name} {why}\n"


def test_a_wheel_of_this_version_passes_the_name_check() -> None:
    assert staging.wheel_problem(Path(f"/x/{WHEEL}")) is None
    assert staging.wheel_problem(Path(f"/x/cfn_chainermn-{__version__}-1-py2.py3-none-any.whl")) is None


def test_without_a_checkout_staged_needs_a_given_wheel(
        no_aws: None, run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(staging, "project_root", lambda: None)
    result = run_cli("stack", "create", NAME, *GOOD, "--yes")
    assert (result.code, result.out) == (2, "")
    assert result.err == ("error: --agent-source: staged needs a source checkout to build the agent wheel from; "
                          "pass --agent-wheel FILE (a wheel of this version) or --agent-source index\n")


# The bucket name is predictable: an attacker who makes it first must not receive the wheel that
# every node installs as root (nor the templates that CloudFormation reads with CAPABILITY_IAM).
NOT_OURS = (f"staging bucket {STAGING} exists but is not owned by account {ACCOUNT} or not readable with these "
            "credentials (another account owns the name?); use --agent-source index, or check the credentials' "
            "s3 permissions")


def test_a_staging_bucket_of_another_account_gets_nothing(stubbed: Any, tmp_path: Path) -> None:
    wheel = tmp_path / WHEEL
    wheel.write_bytes(b"PK\x05\x06" + b"\0" * 18)
    stubbed("sts").add_response("get_caller_identity", {"Account": ACCOUNT}, {})
    # S3 answers 403 to ExpectedBucketOwner when another account owns the bucket
    stubbed("s3").add_client_error("head_bucket", "403", "Forbidden", 403,
                                   expected_params={"Bucket": STAGING, "ExpectedBucketOwner": ACCOUNT})
    with pytest.raises(CfnChainermnError) as caught:
        staging.Stager(stubbed).agent_wheel(wheel)  # any put_object would fail as an unexpected call
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
