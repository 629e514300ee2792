"""Run Packer and shellcheck on a rendered recipe, parse what Packer reports, list built AMIs.

Packer's results are read from its machine-readable stream and its manifest post-processor,
never from the human text; the two must agree on the AMI ids.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfn_chainermn.ami.lock import sha256_file
from cfn_chainermn.ami.render import PROFILE_TAG, TAG_PREFIX
from cfn_chainermn.errors import AmiError, ConfigError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

# Variables of chainermn.pkr.hcl a user may set with --var.
USER_VARIABLES = ("instance_type", "ami_regions", "ami_public", "ami_name_prefix", "volume_size")
AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
# `packer validate` needs every variable set; it opens nothing, so a documentation range will do.
VALIDATE_SSH_CIDR = "192.0.2.0/24"


def _tool(name: str, install_hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise AmiError(f"{name} not found on PATH; {install_hint}")
    return path


def parse_vars(pairs: Iterable[str]) -> dict[str, str]:
    """`--var k=v` pairs; only the template's user-settable variables are accepted."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--var {pair!r}: expected NAME=VALUE, e.g. --var instance_type=p3.2xlarge")
        if key not in USER_VARIABLES:
            raise ConfigError(f"--var {key}: unknown variable; use one of: {', '.join(USER_VARIABLES)}")
        out[key] = value
    return out


def check_ssh_cidr(value: str | None, allow_anywhere: bool = False) -> str:
    """The build instance's SSH source range, checked like the cluster's ssh_cidr."""
    from cfn_chainermn.config.validation import MIN_SSH_PREFIX, _check_cidr, _network

    if not value:
        raise ConfigError("--ssh-cidr: required; give the address Packer connects from "
                          "(for example 203.0.113.7/32)")
    problems: list[str] = []
    _check_cidr("--ssh-cidr", value, problems, min_prefix=0, max_prefix=32)
    net = _network(value)
    if not problems and net is not None and net.prefixlen < MIN_SSH_PREFIX and not allow_anywhere:
        reach = "the whole internet" if net.prefixlen == 0 else "a large part of the internet"
        problems.append(f"--ssh-cidr: {net} opens the build instance's SSH to {reach}; "
                        "give your own address (for example 203.0.113.7/32) or pass --allow-ssh-from-anywhere")
    if problems:
        raise ConfigError(problems)
    return value


def packer_args(region: str, wheel: Path, variables: Mapping[str, str], ssh_cidr: str) -> list[str]:
    if not region:
        raise ConfigError("region: not set; pass --region or set AWS_REGION")
    args = ["-var", f"region={region}", "-var", f"ssh_cidr={ssh_cidr}", "-var", f"agent_wheel={wheel}",
            "-var", f"agent_wheel_sha256={sha256_file(wheel)}"]
    for key, value in variables.items():
        args += ["-var", f"{key}={value}"]
    return args


# Credentials that Packer's AWS SDK would take before a profile (boto3 does not, once one is named).
ENV_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def packer_env(aws_profile: str | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Packer's environment: this one, with AWS_PROFILE set to the AWS profile when there is one.

    Packer's AWS SDK reads key variables before AWS_PROFILE; they are left out so that the named
    profile is used, as boto3 uses it in every other command.
    """
    env = dict(os.environ if environ is None else environ)
    if aws_profile:
        for name in ENV_CREDENTIALS:
            env.pop(name, None)
        env["AWS_PROFILE"] = aws_profile
    return env


def shellcheck(out_dir: Path) -> None:
    """shellcheck every rendered script (all severities); any finding fails."""
    scripts = sorted(str(p) for p in (out_dir / "scripts").glob("*.sh"))
    if not scripts:
        raise AmiError(f"{out_dir}/scripts: no rendered scripts; run `cfn-chainermn ami render PROFILE -o {out_dir}` "
                       "first")
    exe = _tool("shellcheck", "install it (Debian: apt-get install shellcheck)")
    proc = subprocess.run([exe, "--format=gcc", *scripts], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AmiError("shellcheck found problems:\n" + (proc.stdout + proc.stderr).strip())


def packer_validate(out_dir: Path, region: str, wheel: Path,
                    variables: Mapping[str, str] | None = None, ssh_cidr: str = VALIDATE_SSH_CIDR) -> None:
    exe = _tool("packer", "install it (Debian: apt-get install packer; see scripts/install-sysdeps.sh)")
    cmd = [exe, "validate", *packer_args(region, wheel, variables or {}, ssh_cidr), "."]
    proc = subprocess.run(cmd, cwd=out_dir, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AmiError(f"packer validate failed in {out_dir}:\n" + (proc.stdout + proc.stderr).strip())


@dataclass
class MachineReadable:
    """What `packer build -machine-readable` reported, by line type."""

    artifacts: dict[str, dict[str, str]] = field(default_factory=dict)  # "builder/index" -> key -> value
    errors: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _unescape(value: str) -> str:
    return value.replace("%!(PACKER_COMMA)", ",").replace("\\n", "\n").replace("\\r", "\r")


def parse_machine_line(line: str, into: MachineReadable) -> str | None:
    """Parse one line `timestamp,target,type,data...`; returns text worth showing a person."""
    parts = line.rstrip("\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    target, kind, data = parts[1], parts[2], [_unescape(p) for p in parts[3:]]
    if kind == "ui" and len(data) >= 2:
        if data[0] == "error":
            into.errors.append(data[1])
        into.messages.append(data[1])
        return data[1]
    if kind == "artifact" and len(data) >= 3:
        key = f"{target}/{data[0]}"
        into.artifacts.setdefault(key, {})[data[1]] = ",".join(data[2:])
    if kind == "error" and data:
        into.errors.append(data[-1])
    return None


def parse_artifact_id(artifact_id: str) -> dict[str, str]:
    """`us-east-1:ami-0abc,us-west-2:ami-0def` -> {region: ami id}."""
    out: dict[str, str] = {}
    for item in filter(None, artifact_id.split(",")):
        region, _, ami = item.partition(":")
        if not region or not AMI_ID.match(ami):
            raise AmiError(f"unexpected artifact id from packer: {artifact_id!r}")
        out[region] = ami
    return out


def read_manifest(path: Path) -> dict[str, str]:
    """AMI ids per region from the manifest post-processor (the last run's build)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AmiError(f"cannot read packer's manifest {path}: {exc}") from exc
    builds = data.get("builds") or []
    last = data.get("last_run_uuid")
    mine = [b for b in builds if b.get("packer_run_uuid") == last] or builds[-1:]
    if not mine:
        raise AmiError(f"{path}: no build recorded")
    return parse_artifact_id(str(mine[-1].get("artifact_id", "")))


def build_failure(seen: MachineReadable, rc: int) -> str:
    """The most useful line: a provisioning script's FATAL message, else Packer's last error."""
    lines = [ln.strip() for err in seen.errors for ln in err.splitlines() if ln.strip()]
    fatal = [ln for ln in lines if "FATAL:" in ln]
    if fatal:
        return fatal[0][fatal[0].index("FATAL:"):]
    return lines[-1] if lines else f"packer exited with status {rc}"


def packer_build(out_dir: Path, region: str, wheel: Path, variables: Mapping[str, str],
                 echo: Callable[[str], None], runner: Callable[..., Any] = subprocess.Popen, *,
                 ssh_cidr: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Run `packer build -machine-readable`; returns {region: ami id}, checked twice.

    `env` is Packer's environment (packer_env: the AWS profile); None inherits this one.
    """
    exe = _tool("packer", "install it (Debian: apt-get install packer)")
    manifest = out_dir / "packer-manifest.json"
    manifest.unlink(missing_ok=True)
    cmd = [exe, "build", "-machine-readable", "-color=false",
           *packer_args(region, wheel, variables, ssh_cidr), "."]
    seen = MachineReadable()
    proc = runner(cmd, cwd=out_dir, env=None if env is None else dict(env), stdout=subprocess.PIPE,
                  stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        shown = parse_machine_line(line, seen)
        if shown:
            echo(shown)
    rc = proc.wait()
    if rc != 0:
        raise AmiError(f"packer build failed: {build_failure(seen, rc)}")
    from_manifest = read_manifest(manifest)
    from_stream = {}
    for values in seen.artifacts.values():
        if "id" in values:
            from_stream.update(parse_artifact_id(values["id"]))
    if from_stream and from_stream != from_manifest:
        raise AmiError(f"packer's artifact {from_stream} and its manifest {from_manifest} disagree")
    return from_manifest


def list_images(ec2: EC2Client) -> list[dict[str, Any]]:
    """This account's AMIs built by the tool, newest first, with versions from their tags."""
    from cfn_chainermn.aws import mapped

    with mapped("listing this account's cfn-chainermn AMIs (DescribeImages)"):
        pages = ec2.get_paginator("describe_images").paginate(
            Owners=["self"], Filters=[{"Name": "tag-key", "Values": [PROFILE_TAG]}])
        images = [img for page in pages for img in page.get("Images", [])]
    rows = []
    for img in images:
        tags = {t["Key"]: t["Value"] for t in img.get("Tags", [])}
        rows.append({
            "image_id": img["ImageId"], "name": img.get("Name", ""), "state": img.get("State", ""),
            "created": img.get("CreationDate", ""), "public": bool(img.get("Public", False)),
            "profile": tags.get(PROFILE_TAG, ""),
            "versions": {k[len(TAG_PREFIX):]: v for k, v in sorted(tags.items())
                         if k.startswith(TAG_PREFIX) and k != PROFILE_TAG},
        })
    return sorted(rows, key=lambda r: r["created"], reverse=True)
