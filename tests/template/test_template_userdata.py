"""UserData: shellcheck-clean, golden, and actually run under bash with stub commands to prove
the contract: install only when needed, FAILURE signal when the install fails, then exec
`cfn-chainermn node boot` with exactly the agreed arguments. No network: every external
command (curl, aws, python3, cfn-chainermn) is a stub that only logs its arguments."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cfn_chainermn.template.userdata import SAMPLE_VALUES, script, substitute

STUB = """#!/bin/bash
echo "$(basename "$0") $*" >> "$STUB_LOG"
case "$(basename "$0") $1" in
  "cfn-chainermn --version") [ -n "${AGENT_VERSION:-}" ] || exit 127; echo "cfn-chainermn, version $AGENT_VERSION";;
  "python3 -m") [ "$3" != --version ] || exit "${PIP_MISSING:-0}"; exit "${PIP_RC:-0}";;
  "curl -sfS") case "$*" in
    *api/token*) [ -z "${IMDS_DOWN:-}" ] || exit 7; echo TOKEN;;
    *"token: TOKEN"*) echo i-0123456789abcdef0;;
    *) exit 22;;  # IMDSv2 answers 401 without a token; curl -f exits 22
  esac;;
esac
"""


def rendered(role: str, **values: str) -> str:
    return substitute(script(role), {**SAMPLE_VALUES, **values})


@pytest.mark.parametrize("role", ["master", "worker"])
def test_golden(role: str, golden: Any) -> None:
    golden(f"template/userdata-{role}.sh", rendered(role))


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck missing: apt-get install shellcheck")
def test_shellcheck_clean(tmp_path: Path) -> None:
    variants = {
        "master": rendered("master"),
        "worker-no-efs": rendered("worker", EfsArg=""),
        "worker-wheel-index": rendered("worker", AgentWheelS3Path="b/k/cfn_chainermn-0.1.0-py3-none-any.whl",
                                       AgentIndexUrl="https://pypi.example.org/simple"),
    }
    for name, text in variants.items():
        (tmp_path / f"{name}.sh").write_text(text)
    proc = subprocess.run(["shellcheck", "--severity=style", *sorted(str(p) for p in tmp_path.iterdir())],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout
    broken = rendered("master").replace('"$iid"', "$iid")  # prove shellcheck is really looking
    (tmp_path / "broken.sh").write_text(broken)
    assert subprocess.run(["shellcheck", str(tmp_path / "broken.sh")], capture_output=True,
                          check=False).returncode != 0


def run(tmp_path: Path, role: str, env: dict[str, str] | None = None, **values: str) -> tuple[int, list[str]]:
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    for name in ("curl", "aws", "python3", "cfn-chainermn", "apt-get"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    text = rendered(role, **values)
    assert 'export PATH="/usr/local/bin:$PATH"' in text
    text = text.replace('export PATH="/usr/local/bin:', f'export PATH="{stubs}:')
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)
    log.touch()
    proc = subprocess.run(["bash", "-c", text], capture_output=True, text=True, timeout=20, check=False,
                          env={"PATH": f"{stubs}:/usr/bin:/bin", "STUB_LOG": str(log), **(env or {})})
    return proc.returncode, log.read_text().splitlines()


BOOT = ("cfn-chainermn node boot --role {role} --stack demo --region us-east-1 --bucket demo-keybucket-1a2b3c4d5e6f "
        "--signal-resource {signal} --mount-point /efs")


def test_agent_of_the_right_version_boots_without_installing(tmp_path: Path) -> None:
    rc, calls = run(tmp_path, "master", {"AGENT_VERSION": "0.1.0"})
    assert rc == 0
    assert calls == ["cfn-chainermn --version",
                     BOOT.format(role="master", signal="ClusterMaster") + " --efs-id fs-0123456789abcdef0"]


def test_missing_or_other_version_is_installed_from_the_index(tmp_path: Path) -> None:
    rc, calls = run(tmp_path, "worker", {"AGENT_VERSION": "0.0.9"}, EfsArg="",
                    AgentIndexUrl="https://pypi.example.org/simple")
    assert rc == 0
    assert calls[1:3] == ["python3 -m pip --version",
                          "python3 -m pip install --index-url https://pypi.example.org/simple cfn-chainermn==0.1.0"]
    assert calls[3] == BOOT.format(role="worker", signal="WorkerGroup")  # no --efs-id without EFS


def test_staged_wheel_is_installed_from_s3(tmp_path: Path) -> None:
    rc, calls = run(tmp_path, "worker", AgentWheelS3Path="stage-bucket/agent/cfn_chainermn-0.1.0-py3-none-any.whl")
    assert rc == 0
    assert calls[:3] == ["aws s3 cp s3://stage-bucket/agent/cfn_chainermn-0.1.0-py3-none-any.whl /tmp/",
                         "python3 -m pip --version", "python3 -m pip install /tmp/cfn_chainermn-0.1.0-py3-none-any.whl"]
    assert calls[3].startswith("cfn-chainermn node boot --role worker ")


def test_missing_pip_comes_from_apt(tmp_path: Path) -> None:
    rc, calls = run(tmp_path, "master", {"PIP_MISSING": "1"})
    assert rc == 0
    assert calls[1:5] == ["python3 -m pip --version", "apt-get -o DPkg::Lock::Timeout=600 update -q",
                          "apt-get -o DPkg::Lock::Timeout=600 install -y -q python3-pip",
                          "python3 -m pip install cfn-chainermn==0.1.0"]


def test_failed_install_signals_failure_and_stops(tmp_path: Path) -> None:
    rc, calls = run(tmp_path, "worker", {"PIP_RC": "1"})
    assert rc == 1
    assert calls[-1] == ("aws cloudformation signal-resource --region us-east-1 --stack-name demo "
                         "--logical-resource-id WorkerGroup --unique-id i-0123456789abcdef0 --status FAILURE")
    token_call, id_call = calls[-3], calls[-2]
    assert "X-aws-ec2-metadata-token-ttl-seconds" in token_call and "-X PUT" in token_call  # IMDSv2
    assert "X-aws-ec2-metadata-token: TOKEN" in id_call
    assert not any(c.startswith("cfn-chainermn node boot") for c in calls)


def test_failure_is_signalled_even_when_imds_fails(tmp_path: Path) -> None:
    """fail() runs under `set -euo pipefail`: a failing curl must not skip the signal, or the
    stack waits for its timeout instead of failing now."""
    rc, calls = run(tmp_path, "master", {"PIP_RC": "1", "IMDS_DOWN": "1"})
    assert rc == 1
    curls = [c for c in calls if c.startswith("curl ")]
    assert len(curls) == 2 and "api/token" in curls[0] and "meta-data/instance-id" in curls[1]
    assert calls[-1] == ("aws cloudformation signal-resource --region us-east-1 --stack-name demo "
                         "--logical-resource-id ClusterMaster --unique-id  --status FAILURE")
    assert not any(c.startswith("cfn-chainermn node boot") for c in calls)
