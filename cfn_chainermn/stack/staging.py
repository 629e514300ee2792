"""The staging bucket: the node agent's wheel, and templates too big to pass inline.

Nodes install the agent from here ("staged", the default) so a cluster runs exactly the code
that created it, even an unreleased checkout (the wheel is built afresh for each stack unless
`--agent-wheel` names one of this version); `--agent-source index` installs AgentPackage
from a package index instead and `ami` expects it baked into the image. One bucket per
account and region, created on first use: encrypted, public access blocked, and used only while
this account owns it (every call names it as ExpectedBucketOwner: the name is predictable).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfn_chainermn import __version__
from cfn_chainermn.aws import Aws, aws_error, error_code, mapped
from cfn_chainermn.errors import CfnChainermnError, ConfigError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import BucketLifecycleConfigurationTypeDef


AGENT_SOURCES = ("staged", "index", "ami")
AGENT_PREFIX = "agent/"
TEMPLATE_PREFIX = "templates/"
TEMPLATE_DAYS = 7
# CloudFormation reads a TemplateURL only while it creates or updates the stack, so staged
# templates go after a week. Agent wheels stay: a node that boots later (scale-out, a Spot
# replacement) installs the agent from its stack's AgentWheelS3Path.
LIFECYCLE: BucketLifecycleConfigurationTypeDef = {"Rules": [
    {"ID": "templates-expire", "Status": "Enabled", "Filter": {"Prefix": TEMPLATE_PREFIX},
     "Expiration": {"Days": TEMPLATE_DAYS}},
    {"ID": "abort-incomplete-uploads", "Status": "Enabled", "Filter": {"Prefix": ""},
     "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}},
]}
_PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE", "cfn_chainermn")


def bucket_name(account: str, region: str) -> str:
    return f"cfn-chainermn-staging-{account}-{region}"


def ensure_bucket(s3: S3Client, bucket: str, region: str, owner: str) -> None:
    """Create the bucket if missing, encrypted and private; refuse one owned by someone else.

    The name is predictable, so anyone could make it first and receive the agent wheel that every
    node installs as root: every call on the bucket names `owner` (this account) as
    ExpectedBucketOwner, and S3 answers 403 when another account owns it.
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
                             "readable with these credentials (another account owns the name?); use "
                             "--agent-source index, or check the credentials' s3 permissions")


def project_root() -> Path | None:
    """The source checkout this package runs from, if it is one (an installed wheel is not)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def wheel_problem(path: Path) -> str | None:
    """Why `path` is not a wheel of this package's version for any platform (None when it is).

    Read from the file name (PEP 427: name-version[-build]-python-abi-platform.whl), so a wrong
    wheel is refused before anything is sent to AWS.
    """
    want = f"cfn_chainermn-{__version__}-py3-none-any.whl"
    parts = path.name[:-len(".whl")].split("-") if path.name.endswith(".whl") else []
    if len(parts) not in (5, 6):
        return f"{path.name} is not a wheel file name; give {want}"
    dist, version, (python, abi, platform) = parts[0], parts[1], parts[-3:]
    if dist.lower().replace(".", "_") != "cfn_chainermn":
        return f"{path.name} is a wheel of {dist}, not cfn_chainermn; give {want}"
    if version != __version__:
        return (f"{path.name} is version {version} but this cfn-chainermn is {__version__}; the nodes must run "
                f"the version that creates the stack: give {want}")
    if "py3" not in python.split(".") or abi != "none" or platform != "any":
        return f"{path.name} is built for {python}-{abi}-{platform}, not py3-none-any; give {want}"
    return None


def check_agent_options(agent_source: str, agent_wheel: Path | None) -> None:
    """The agent flags make sense together, before any AWS call (ConfigError, exit 2)."""
    if agent_wheel is not None and agent_source != "staged":
        raise ConfigError("--agent-wheel: only used with --agent-source staged; drop one of them")
    if agent_wheel is not None:
        problem = wheel_problem(agent_wheel)
        if problem:
            raise ConfigError(f"--agent-wheel: {problem}")
    elif agent_source == "staged" and project_root() is None:
        raise ConfigError("--agent-source: staged needs a source checkout to build the agent wheel from; "
                          "pass --agent-wheel FILE (a wheel of this version) or --agent-source index")


def build_wheel(out_dir: Path, root: Path | None = None) -> Path:
    """`pip wheel --no-deps` of the checkout, built in a copy so the tree gets no build/ litter."""
    root = root or project_root()
    if root is None:
        raise ConfigError("agent_source: cannot build the agent wheel from an installed package; "
                          "pass --agent-wheel FILE or --agent-source index")
    with tempfile.TemporaryDirectory(prefix="cfn-chainermn-src-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        for name in _PROJECT_FILES:
            path = root / name
            if path.is_dir():
                shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            elif path.is_file():
                shutil.copy2(path, src / name)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
               "--disable-pip-version-check", "-q", "-w", str(out_dir), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(out_dir.glob("cfn_chainermn-*.whl"))
    if proc.returncode != 0 or not wheels:
        detail = (proc.stderr.strip().splitlines() or ["no wheel produced"])[-1]
        raise CfnChainermnError(f"building the agent wheel failed: {detail}; pass --agent-wheel FILE "
                                "or --agent-source index")
    return wheels[-1]


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

    def agent_wheel(self, wheel: Path | None = None) -> str:
        """Stage the agent wheel (the one given, else built from this checkout now); returns "bucket/key".

        Built every time rather than taken from dist/, so the nodes run the code that runs here.
        """
        if wheel is not None:
            return f"{self.bucket}/{self._upload(AGENT_PREFIX, wheel)}"
        with tempfile.TemporaryDirectory(prefix="cfn-chainermn-wheel-") as tmp:
            built = build_wheel(Path(tmp))
            return f"{self.bucket}/{self._upload(AGENT_PREFIX, built)}"

    def template(self, stack_name: str, body: str) -> str:
        """Upload a template body; returns the TemplateURL CloudFormation reads it from."""
        with tempfile.TemporaryDirectory(prefix="cfn-chainermn-tpl-") as tmp:
            path = Path(tmp) / f"{stack_name}.json"
            path.write_text(body, encoding="utf-8")
            key = self._upload(TEMPLATE_PREFIX, path)
        return f"https://{self.bucket}.s3.{self.aws.region}.amazonaws.com/{key}"
