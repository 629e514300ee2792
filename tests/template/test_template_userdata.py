"""UserData is the bootstrap (template/bootstrap.py) with its CONFIG filled in: golden, small
enough for EC2, safe to fill, Python 3.7 grammar, and run for real on modelled images. IMDS is
the IMDSv2 stand-in, CloudFormation a front that checks each SigV4 signature with botocore and
records signals; images are modelled by PATH (which pythons exist) and the agent home."""

from __future__ import annotations

import ast
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cfn_front import CfnFront
from imds_stand_in import ImdsStandIn

from cfn_chainermn import __version__
from cfn_chainermn.config.model import ClusterConfig
from cfn_chainermn.config.settings import AGENT_INDEX_URL_MAX, AGENT_PACKAGE_MAX
from cfn_chainermn.template import bootstrap, render
from cfn_chainermn.template.agent_bundle import current
from cfn_chainermn.template.userdata import SAMPLE_VALUES, USER_DATA_LIMIT, script, substitute

IID = "i-0123456789abcdef0"
CREDS = {"AccessKeyId": "AKIDEXAMPLE", "SecretAccessKey": "secret/example", "Token": "token-example"}
BOOT = ["node", "boot", "--role", "master", "--stack", "demo", "--region", "us-east-1", "--bucket",
        "demo-keybucket-1a2b3c4d5e6f", "--signal-resource", "ClusterMaster", "--mount-point", "/efs",
        "--efs-id", "fs-0123456789abcdef0"]


def rendered(role: str, sha256: str | None = None, **values: str) -> str:
    return substitute(script(role, sha256), {**SAMPLE_VALUES, **values})


@pytest.mark.parametrize("role", ["master", "worker"])
def test_golden(role: str, golden: Any) -> None:
    golden(f"template/userdata-{role}.py", rendered(role, sha256="0" * 64))


def test_fits_ec2_user_data_limit() -> None:
    assert len(substitute(script("worker")).encode()) < USER_DATA_LIMIT


def test_runs_on_any_python3_an_image_may_have() -> None:
    """The bootstrap must at least start (and signal why not) on an image whose python3 is old."""
    ast.parse(Path(bootstrap.__file__).read_text(), feature_version=(3, 7))


def test_template_values_cannot_break_out_of_their_python_strings() -> None:
    """Each parameter filled into CONFIG forbids the characters that end or escape a "string"."""
    import yaml

    params = yaml.safe_load(render(ClusterConfig(), "yaml"))["Parameters"]
    names = [n for n in re.findall(r"\$\{([A-Za-z]+)\}", script("master")) if n in params]
    assert sorted(names) == ["AgentIndexUrl", "AgentPackage", "AgentSource", "MountPoint"]
    for name in names:
        p = params[name]
        for bad in ('a"b', "a\\b", "a\nb"):
            assert "AllowedValues" in p or not re.match(p["AllowedPattern"], bad), (name, bad)


def test_sigv4_matches_botocore() -> None:
    now = datetime.datetime(2026, 12, 2, 12, 0, 0, tzinfo=datetime.timezone.utc)
    body = b"Action=GetTemplate&StackName=demo&Version=2010-05-15"
    url = "https://cloudformation.us-east-1.amazonaws.com/"
    ours = bootstrap.sign(url, body, "us-east-1", "cloudformation", CREDS, now)
    request = AWSRequest(method="POST", url=url, data=body, headers={k: v for k, v in ours.items()
                                                                     if k != "authorization"})
    request.context["timestamp"] = now.strftime("%Y%m%dT%H%M%SZ")
    signer = SigV4Auth(Credentials("AKIDEXAMPLE", "secret/example", "token-example"), "cloudformation", "us-east-1")
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    assert ours["authorization"].endswith(f"Signature={expected}")
    assert "Credential=AKIDEXAMPLE/20261202/us-east-1/cloudformation/aws4_request" in ours["authorization"]


class Node:
    """One modelled instance: IMDS, CloudFormation, and an image (PATH, agent home)."""

    def __init__(self, tmp: Path, *, template: str = "", imds_up: bool = True) -> None:
        self.tmp = tmp
        self.front = CfnFront(Credentials(CREDS["AccessKeyId"], CREDS["SecretAccessKey"], CREDS["Token"]),
                              template=template)
        meta = {"instance-id": IID, "iam/security-credentials/": "node-role",
                "iam/security-credentials/node-role": json.dumps(CREDS)}
        self.imds = ImdsStandIn(meta)
        if not imds_up:
            self.imds.close()
        self.bin = tmp / "bin"
        self.bin.mkdir()
        self.home = tmp / "opt"
        self.calls = tmp / "calls.log"

    def fake(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n" + text)
        path.chmod(0o755)

    def python(self, name: str, version: str) -> None:
        """A python on PATH that reports `version` (what choose_python asks) and does nothing else."""
        self.fake(self.bin / name, f'echo "{name} $*" >> {self.calls}\necho {version}\n')

    def baked(self, version: str, sha256: str | None = None) -> None:
        """An agent `ami build` baked: its version, and the sha256 of the wheel it was built from."""
        self.fake(self.home / "venv/bin/cfn-chainermn",
                  f'[ "$1" = --version ] && {{ echo "cfn-chainermn, version {version}"; exit 0; }}\n'
                  f'echo "baked $*" >> {self.calls}\n')
        (self.home / "venv/agent-wheel.sha256").write_text((sha256 or current().sha256) + "\n")

    def venv_python(self, name: str = "python3.12") -> None:
        """A python whose `-m venv DEST` makes a venv whose pip logs, fails when PIP_FAIL is set, and
        installs a stand-in agent from the wheel (so the exec at the end is seen)."""
        agent, pip = self.tmp / "agent-stub", self.tmp / "venv-python"
        self.fake(agent, f'echo "agent $*" >> {self.calls}\n')
        self.fake(pip, f'echo "venv-python $*" >> {self.calls}\n'
                       'case "$*" in *"-r "*) [ -z "$PIP_FAIL" ] || exit 1;; esac\n'
                       f'case "$*" in *--no-index*) /bin/cp {agent} "${{0%/*}}/cfn-chainermn";; esac\n')
        self.fake(self.bin / name, f'echo "{name} $*" >> {self.calls}\n'
                                   'case "$*" in *version_info*) echo 3.12;; *"-m venv"*) '
                                   f'/bin/mkdir -p "$4/bin"; /bin/cp {pip} "$4/bin/python";; esac\n')

    def boot(self, role: str = "master", *args: str, sha256: str | None = None, env: dict[str, str] | None = None,
             **values: str) -> subprocess.CompletedProcess[str]:
        path = self.tmp / "user-data"
        path.write_text(rendered(role, sha256, **values))
        env = {"PATH": str(self.bin), "CFN_CHAINERMN_AGENT_HOME": str(self.home), "CFN_CHAINERMN_IMDS_WAIT": "1",
               "AWS_EC2_METADATA_SERVICE_ENDPOINT": self.imds.url, "AWS_ENDPOINT_URL": self.front.url,
               **(env or {})}
        return subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, env=env,
                              timeout=60, check=False)

    def logged(self) -> list[str]:
        return self.calls.read_text().splitlines() if self.calls.exists() else []

    def close(self) -> None:
        self.front.close()
        self.imds.close()


@pytest.fixture
def node(tmp_path: Path) -> Any:
    n = Node(tmp_path)
    yield n
    n.close()


def test_baked_agent_of_this_version_is_used_as_it_is(node: Node) -> None:
    node.baked(__version__)
    proc = node.boot()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert node.logged() == ["baked " + " ".join(BOOT)]  # exec'd with exactly the agreed arguments
    assert node.front.actions == []  # nothing fetched, nothing signalled


def test_baked_agent_of_this_version_but_another_wheel_gives_way_to_the_template(node: Node) -> None:
    """Same version is not same code: a month-old image must not override the template's agent."""
    node.baked(__version__, sha256="e" * 64)
    node.venv_python()
    node.front.template = render(ClusterConfig(), "yaml")
    proc = node.boot()
    assert proc.returncode == 0, proc.stdout
    assert "GetTemplate" in node.front.actions
    assert not any(c.startswith("baked ") for c in node.logged())
    assert node.logged()[-1] == "agent " + " ".join(BOOT)


def test_ami_source_takes_a_baked_agent_of_this_version_as_it_is(node: Node) -> None:
    node.baked(__version__, sha256="e" * 64)
    assert node.boot(AgentSource="ami").returncode == 0
    assert node.logged() == ["baked " + " ".join(BOOT)] and node.front.actions == []


def test_a_half_built_venv_is_rebuilt_and_a_built_one_reused(node: Node) -> None:
    node.venv_python()
    node.front.template = render(ClusterConfig(), "yaml")
    failed = node.boot(env={"PIP_FAIL": "1"})
    assert failed.returncode == 1 and "agent's hash-pinned dependencies failed" in failed.stdout
    assert [s["UniqueId"] for s in node.front.signals] == [f"{IID}-agent-deps"]
    (venv,) = node.home.glob("agent-*")
    assert not (venv / ".complete").exists()
    assert node.boot().returncode == 0  # rebuilt from scratch
    assert (venv / ".complete").read_text() == current().sha256
    reads = node.front.actions.count("GetTemplate")
    assert node.boot().returncode == 0 and node.front.actions.count("GetTemplate") == reads  # reused
    (venv / ".complete").write_text("f" * 64)  # not this agent's: rebuilt
    assert node.boot().returncode == 0 and node.front.actions.count("GetTemplate") == reads + 1
    assert node.logged()[-1] == "agent " + " ".join(BOOT)


def test_every_python_call_is_isolated_from_the_working_folder(node: Node) -> None:
    """`python -m` puts the working folder first on sys.path: the bootstrap runs from / with -I."""
    node.venv_python()
    node.front.template = render(ClusterConfig(), "yaml")
    assert node.boot().returncode == 0
    calls = [c for c in node.logged() if c.startswith(("python3.12 -", "venv-python "))]
    assert calls and all(" -I -m " in f" {c} " for c in calls if "version_info" not in c), calls


def test_a_linked_agent_home_is_refused(node: Node, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    node.home.symlink_to(elsewhere)
    node.baked(__version__)
    proc = node.boot()
    assert proc.returncode == 1 and "is a link" in proc.stdout
    assert node.logged() == [] and [s["UniqueId"] for s in node.front.signals] == [f"{IID}-agent-home"]


def test_a_missing_program_is_its_steps_failure_and_signalled(node: Node) -> None:
    """A program the image lacks (here apt-get, wanted because its python has no ensurepip) is that
    step's failure, signalled now with a reason, never a 30-minute wait."""
    node.fake(node.bin / "python3.12", 'case "$*" in *version_info*) echo 3.12;; *) exit 1;; esac\n')
    node.front.template = render(ClusterConfig(), "yaml")
    proc = node.boot()
    assert proc.returncode == 1 and "apt-get update failed" in proc.stdout
    assert [s["UniqueId"] for s in node.front.signals] == [f"{IID}-venv"]


def test_a_corrupt_agent_in_the_template_is_signalled(node: Node) -> None:
    node.python("python3.12", "3.12")
    node.front.template = render(ClusterConfig(), "yaml").replace(current().encoded()[-200:], "A" * 200)
    proc = node.boot()
    assert proc.returncode == 1 and "does not decode" in proc.stdout
    assert [s["UniqueId"] for s in node.front.signals] == [f"{IID}-agent-corrupt"]


def test_worst_case_user_data_fits_ec2s_limit() -> None:
    """Every value Fn::Sub fills in at its longest still leaves UserData under 16 KB."""
    longest = {**SAMPLE_VALUES, "AWS::StackName": "s" * 128, "AWS::Region": "ap-southeast-12",
               "AWS::URLSuffix": "amazonaws.com.cn", "KeyBucket": "b" * 63, "MountPoint": "/" + "m" * 100,
               "EfsId": "fs-0123456789abcdef0", "AgentSource": "template",
               "AgentPackage": "p" * AGENT_PACKAGE_MAX, "AgentIndexUrl": "u" * AGENT_INDEX_URL_MAX}
    for role in ("master", "worker"):
        assert len(substitute(script(role), longest).encode()) < USER_DATA_LIMIT


def test_worker_without_efs_boots_with_its_own_arguments(node: Node) -> None:
    node.baked(__version__)
    assert node.boot("worker", EfsId="").returncode == 0
    assert node.logged() == ["baked node boot --role worker --stack demo --region us-east-1 --bucket "
                             "demo-keybucket-1a2b3c4d5e6f --signal-resource WorkerGroup --mount-point /efs"]


def test_modelled_python38_image_without_aws_fails_at_once_with_the_reason(node: Node) -> None:
    """No Python >= 3.10 (python3 is 3.8, no `aws` CLI): FAILURE goes to the stack now, signed by
    the bootstrap itself, with the reason in the UniqueId and the console output."""
    node.python("python3", "3.8")
    node.baked("0.0.9")  # a baked agent of another version is not used
    proc = node.boot()
    assert proc.returncode == 1
    assert "Python >= 3.10" in proc.stdout and "python3 is 3.8" in proc.stdout
    assert node.front.signals == [{"Action": "SignalResource", "Version": "2010-05-15", "StackName": "demo",
                                   "LogicalResourceId": "ClusterMaster", "UniqueId": f"{IID}-no-python310",
                                   "Status": "FAILURE"}]
    assert "GetTemplate" not in node.front.actions


def test_ami_source_without_a_baked_agent_fails_without_installing(node: Node) -> None:
    node.python("python3.12", "3.12")
    proc = node.boot(AgentSource="ami")
    assert proc.returncode == 1 and "AgentSource is ami" in proc.stdout
    assert [s["UniqueId"] for s in node.front.signals] == [f"{IID}-no-baked-agent"]
    assert node.logged() == []  # not even a python was asked


def test_template_without_the_agent_is_refused(node: Node) -> None:
    node.python("python3.12", "3.12")
    node.front.template = "Resources: {}"
    proc = node.boot()
    assert proc.returncode == 1 and "carries no agent" in proc.stdout
    assert [s["UniqueId"] for s in node.front.signals] == [f"{IID}-no-agent"]


def test_an_agent_other_than_the_one_user_data_names_is_refused(node: Node) -> None:
    node.python("python3.12", "3.12")
    node.front.template = render(ClusterConfig(), "yaml")
    proc = node.boot(sha256="f" * 64)
    assert proc.returncode == 1 and "sha256 differs" in proc.stdout
    assert [s["UniqueId"] for s in node.front.signals] == [f"{IID}-agent-hash"]


def test_denied_template_read_names_the_aws_error(node: Node) -> None:
    node.python("python3.12", "3.12")
    node.front.error = (403, "AccessDenied", "not authorized to perform: cloudformation:GetTemplate")
    proc = node.boot()
    assert proc.returncode == 1
    assert "GetTemplate: AccessDenied: not authorized to perform: cloudformation:GetTemplate" in proc.stdout
    assert node.front.signals == []  # the same denial met the signal: said on the console, not hidden
    assert "cannot signal CloudFormation: SignalResource: AccessDenied" in proc.stdout


def test_without_imds_nothing_is_signalled_with_an_empty_id(tmp_path: Path) -> None:
    """The old shell fail() sent --unique-id "" when IMDS was down; now the reason stays in the
    console output (which `stack` commands show) and no malformed signal is sent."""
    n = Node(tmp_path, imds_up=False)
    try:
        n.python("python3", "3.8")
        proc = n.boot()
        assert proc.returncode == 1
        assert "instance metadata unreachable" in proc.stdout and "cannot signal CloudFormation" in proc.stdout
        assert n.front.actions == []
    finally:
        n.close()


def test_agent_home_someone_else_can_write_is_refused(node: Node) -> None:
    node.home.mkdir(mode=0o777)
    node.home.chmod(0o777)
    node.baked(__version__)
    node.home.chmod(0o777)
    proc = node.boot()
    assert proc.returncode == 1 and "writable by others" in proc.stdout
    assert node.logged() == [] and [s["UniqueId"] for s in node.front.signals] == [f"{IID}-agent-home"]


def test_the_template_carries_the_checked_script_and_this_agent() -> None:
    import yaml

    doc = yaml.safe_load(render(ClusterConfig(), "yaml"))
    res = doc["Resources"]
    assert res["ClusterMaster"]["Properties"]["UserData"]["Fn::Base64"]["Fn::Sub"][0] == script("master")
    lt = res["WorkerLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert lt["UserData"]["Fn::Base64"]["Fn::Sub"][0] == script("worker")
    meta = res["NodeAgent"]["Metadata"]["cfn-chainermn"]
    assert (meta["Version"], meta["Sha256"]) == (__version__, current().sha256)
    assert f'"sha256": "{current().sha256}"' in script("master")


@pytest.mark.parametrize("escape", [False, True])
def test_the_wheel_is_found_in_yaml_and_in_json_even_with_escaped_slashes(escape: bool) -> None:
    """GetTemplate returns the body as stored; a JSON writer may spell / as \\/."""
    text = render(ClusterConfig(), "json")
    if escape:
        text = text.replace("/", "\\/")
    assert bootstrap.wheel_from(text, current().sha256) == current().wheel
    assert bootstrap.wheel_from(render(ClusterConfig(), "yaml"), current().sha256) == current().wheel
