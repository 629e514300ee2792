"""Bad input and broken access: exit codes, one line per problem, and no AWS call when input is bad."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from stack_helpers import NAME, PINNED, STACK_ID, http_endpoint, refused_port

GOOD = ["--key-name", "k", "--ssh-cidr", "203.0.113.7/32"]
EFS = "fs-0123456789abcdef0"

# (args, expected stderr lines: each a prefix of one line, in order; nothing else may be printed)
BAD_INPUT: list[tuple[list[str], list[str]]] = [
    (["stack", "create", "1bad", *GOOD],
     ["error: name: '1bad' is not a CloudFormation stack name; use 1-128 letters, digits and hyphens"]),
    (["stack", "create", NAME, "--key-name", "k", "--ssh-cidr", "0.0.0.0/0"],
     ["error: ssh_cidr: 0.0.0.0/0 opens SSH to the whole internet; give your own address range (for example "
      "203.0.113.7/32) or set allow_ssh_from_anywhere: true (--allow-ssh-from-anywhere)"]),
    (["stack", "create", NAME, "--key-name", "k", "--ssh-cidr", "128.0.0.0/1"],
     ["error: ssh_cidr: 128.0.0.0/1 opens SSH to a large part of the internet; give your own address range"]),
    (["stack", "create", NAME, *GOOD, "--mount-point", "/efs/../etc"],
     ["error: efs.mount_point: '/efs/../etc' has an empty, '.' or '..' part"]),
    (["stack", "create", NAME, *GOOD, "--mount-point", "/opt"],
     ["error: efs.mount_point: /opt is a system folder; give a folder of its own such as /efs or /mnt/efs"]),
    (["stack", "create", NAME, *GOOD, "--instance-type", "p9.huge"],
     ["error: instance_type: unknown instance type 'p9.huge'; choose one of p3.2xlarge"]),
    # GPUs the image cannot drive, EFA on a type without it (issue 11): one line each, no AWS call
    (["stack", "create", NAME, *GOOD, "--instance-type", "p3.16xlarge"],
     ["error: instance_type: p3.16xlarge: V100 (sm_70) needs NVIDIA's proprietary driver, branch 580 or older: the "
      "open kernel modules run Turing and newer only, and newer branches dropped it; the default image (Deep "
      "Learning Base OSS AMI) cannot drive it: give --ami of an image with that driver (cfn-chainermn ami build "
      "--profile current) or choose another type"]),
    # ... named by the setting that brought the type in: a Spot type's is spot_instance_types
    (["stack", "create", NAME, *GOOD, "--instance-type", "g6.xlarge", "--spot-workers", "--spot-instance-types",
      "p3.2xlarge"],
     ["error: spot_instance_types: p3.2xlarge: V100 (sm_70) needs NVIDIA's proprietary driver, branch 580 or older: "
      "the open kernel modules run Turing and newer only, and newer branches dropped it; the default image (Deep "
      "Learning Base OSS AMI) cannot drive it: give --ami of an image with that driver (cfn-chainermn ami build "
      "--profile current) or choose another type"]),
    (["stack", "create", NAME, *GOOD, "--instance-type", "g5.xlarge", "--efa", "on"],
     ["error: efa: g5.xlarge has no EFA; set efa to auto or off, or choose a type with EFA (the larger sizes of "]),
    (["stack", "create", NAME, *GOOD, "--efa", "sometimes"],
     ["error: Invalid value for '--efa': 'sometimes' is not one of 'auto', 'on', 'off'."]),
    (["stack", "create", NAME, *GOOD, "--vpc-cidr", "10.0.0.0/16", "--subnet-cidr", "10.1.0.0/24"],
     ["error: network.subnet_cidr: 10.1.0.0/24 is outside network.vpc_cidr 10.0.0.0/16"]),
    (["stack", "create", NAME, *GOOD, "--subnet-id", "subnet-0123456789abcdef0"],
     ["error: network.vpc_id: required with an existing subnet; give --vpc-id"]),
    (["stack", "create", NAME, *GOOD, "--efs", EFS],
     ["error: efs.security_group_id: required with an existing EFS; give --efs-security-group"]),
    (["stack", "create", NAME, *GOOD, "--efs", "bogus"],
     ["error: --efs: 'bogus' is not none, new, or an EFS id"]),
    (["stack", "create", NAME, *GOOD, "--workers", "-1"],
     ["error: workers: -1 is out of range; give 0 to 256"]),
    (["stack", "create", NAME, *GOOD, "--workers", "two"],
     ["error: Invalid value for '--workers': 'two' is not a valid integer."]),
    (["stack", "create", NAME, *GOOD, "--tag", "novalue"], ["error: --tag: 'novalue' is not KEY=VALUE"]),
    (["stack", "create", NAME, *GOOD, "--region", "mars-1"],
     ["error: region: 'mars-1' is not an AWS region name"]),
    (["stack", "create", NAME], ["error: key_name: required", "error: ssh_cidr: required"]),
    (["stack", "create", "9x", "--key-name", "k", "--ssh-cidr", "0.0.0.0/0", "--workers", "999"],
     ["error: name: '9x'", "error: workers: 999 is out of range", "error: ssh_cidr: 0.0.0.0/0 opens SSH"]),
    (["stack", "create", NAME, *GOOD, "--config", "/nonexistent/cluster.yaml"],
     ["error: --config: cannot read /nonexistent/cluster.yaml"]),
    (["stack", "create", NAME, *GOOD, "--agent-source", "pypi"],
     ["error: Invalid value for '--agent-source': 'pypi' is not one of 'template', 'ami', 'index'."]),
    # a node installs this project from an index only pinned by hash (whoever registers the name gets root)
    (["stack", "create", NAME, *GOOD, "--agent-source", "index", "--agent-package", "cfn-chainermn==0.1.0"],
     ["error: agent_package: give cfn-chainermn==VERSION --hash=sha256:<64 hex digits> (a node installs this "
      "project from an index only pinned by hash)"]),
    (["stack", "update", NAME, "--agent-source", "index", "--agent-package", PINNED.replace("0a", "0A")],
     ["error: agent_package: give cfn-chainermn==VERSION --hash=sha256:<64 hex digits>"]),
    (["stack", "create", NAME, *GOOD, "--agent-source", "index"],
     ["error: agent_package: agent_source index needs it: cfn-chainermn==VERSION --hash=sha256:<64 hex digits>"]),
    (["stack", "create", NAME, *GOOD, "--agent-package", PINNED],
     ["error: agent_package: only used with agent_source index (it is template); drop it"]),
    (["stack", "update", NAME, "--agent-source", "ami", "--agent-package", PINNED],
     ["error: agent_package: only used with agent_source index (it is ami); drop it"]),
    # the staged agent wheel is gone: the agent travels inside the template
    (["stack", "create", NAME, *GOOD, "--agent-wheel", __file__], ["error: No such option '--agent-wheel'."]),
    (["stack", "create", NAME, *GOOD, "--on-failure", "ignore"], ["error: Invalid value for '--on-failure'"]),
    (["stack", "update", NAME, *GOOD, "--output", "yaml"], ["error: Invalid value for '--output': 'yaml'"]),
    (["stack", "scale", NAME, "--workers", "-1"], ["error: --workers: -1 is out of range; give 0 to 256"]),
    (["stack", "scale", NAME], ["error: Missing option '--workers'."]),
    (["stack", "status", NAME, "--output", "xml"], ["error: Invalid value for '--output': 'xml'"]),
    (["stack", "watch", NAME, "--output", "yaml"], ["error: Invalid value for '--output': 'yaml'"]),
    (["stack", "events", NAME, "--output", "csv"], ["error: Invalid value for '--output': 'csv'"]),
    (["stack", "outputs"], ["error: Missing argument 'NAME'."]),
    (["stack", "list", "--output", "table"], ["error: Invalid value for '--output': 'table'"]),
    (["stack", "delete", NAME, "--force"], ["error: No such option '--force'."]),
]


@pytest.mark.parametrize(("args", "expected"), BAD_INPUT, ids=[" ".join(a[1:4]) for a, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_line_per_problem_before_any_aws_call(
        no_aws: None, run_cli: Any, args: list[str], expected: list[str]) -> None:
    result = run_cli(*args)
    lines = result.err.splitlines()
    assert result.code == 2, result.err
    assert result.out == ""
    assert len(lines) == len(expected), result.err
    for line, prefix in zip(lines, expected, strict=True):
        assert line.startswith(prefix), (line, prefix)


@pytest.mark.parametrize("args", [["stack", "status", NAME], ["stack", "create", NAME, *GOOD, "--yes"]])
def test_missing_credentials_is_a_clean_message(
        monkeypatch: pytest.MonkeyPatch, run_cli: Any, args: list[str]) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{refused_port()}")
    result = run_cli(*args)
    assert result.code == 2
    assert result.err.splitlines()[-1] == (
        "error: no AWS credentials found; run `aws configure`, set AWS_PROFILE, or pass --profile")
    assert "Traceback" not in result.err


_THROTTLED = (b'<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type>'
              b"<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r1</RequestId>"
              b"</ErrorResponse>")
_STACKS = (f'<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">'
           f"<DescribeStacksResult><Stacks><member><StackName>{NAME}</StackName><StackId>{STACK_ID}</StackId>"
           f"<CreationTime>2026-01-02T03:04:05Z</CreationTime><StackStatus>CREATE_COMPLETE</StackStatus>"
           f"</member></Stacks></DescribeStacksResult><ResponseMetadata><RequestId>r2</RequestId>"
           f"</ResponseMetadata></DescribeStacksResponse>").encode()


@pytest.fixture
def throttling_endpoint() -> Iterator[tuple[str, list[bytes]]]:
    """A CloudFormation endpoint on 127.0.0.1 that throttles the first request and answers the next."""
    requests: list[bytes] = []

    def answer(request: bytes) -> tuple[int, str, bytes]:
        requests.append(request)
        return (400, "text/xml", _THROTTLED) if len(requests) == 1 else (200, "text/xml", _STACKS)

    with http_endpoint(answer) as url:
        yield url, requests


def test_throttling_is_retried_by_botocore(throttling_endpoint: tuple[str, list[bytes]], run_cli: Any) -> None:
    """Through real HTTP: Stubber answers before botocore's retry handler, so it cannot show this."""
    url, requests = throttling_endpoint
    result = run_cli("stack", "status", NAME, "--endpoint-url", url)
    assert result.code == 0, result.err
    assert len(requests) == 2 and all(b"Action=DescribeStacks" in r for r in requests)
    assert "state    complete (CREATE_COMPLETE)" in result.out


def test_an_unknown_profile_is_a_usage_error(run_cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{refused_port()}")
    result = run_cli("stack", "list", "--profile", "nope")
    assert result.code == 2
    assert result.err == ("error: The config profile (nope) could not be found; check --profile / AWS_PROFILE "
                          "against ~/.aws/config\n")
