"""The agent's failures on AWS back ends (moto on 127.0.0.1, Stubber-pinned signals): each names
its cause in the agent log and the signal, and leaves the last good state in place."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from node_sim import FSTAB, SimCluster

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.errors import AgentError
from cfn_chainermn.node import agent, aws_platform, imds_guard
from cfn_chainermn.node.agent import AwsClients
from cfn_chainermn.node.state import State
from cfn_chainermn.node.system import System


def test_key_never_appears_fails_with_reason_and_signal(sim_cluster: SimCluster, tmp_path: Path) -> None:
    c = sim_cluster
    w1 = c.nodes["w1"]
    clients = c.clients("w1", status="FAILURE")
    with pytest.raises(AgentError) as info:
        agent.boot(c.settings("w1", key_wait=1.0), clients, echo=c.echo())
    assert "ssh step failed: cluster key" in str(info.value) and "did not appear within 1 s" in str(info.value)
    c.stubs[-1].assert_no_pending_responses()  # the FAILURE signal was sent with the pinned arguments
    log = c.get(f"logs/{w1.instance_id}/agent.log").decode()
    assert "did not appear within 1 s" in log and "PRIVATE KEY" not in log
    state = State.load(w1.root / "var/lib/cfn-chainermn/state.json")
    assert not state.ready and state.steps["ssh"]["status"] == "failed"
    assert state.steps["ready"]["status"] == "pending"
    assert "Contents" not in c.s3.list_objects_v2(Bucket=c.bucket, Prefix=f"nodes/{w1.instance_id}/ready")
    assert run_with_boundary(cli, ["node", "status", "--root", str(w1.root)]) == 1


def test_describe_failure_during_refresh_keeps_hostfile(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    for name in ("master", "w1"):
        c.boot(name)
    m = c.nodes["master"]
    hostfile = m.root / "home/chainer/hostfile"
    agent.refresh(c.settings("master"), AwsClients(c.ec2, c.s3, None), echo=c.echo())
    good = hostfile.read_bytes()
    assert good.count(b"slots=") == 2
    failing = boto3.client("ec2", region_name="us-east-1")
    with Stubber(failing) as stub:
        stub.add_client_error("describe_instances", "RequestLimitExceeded", "Request limit exceeded.")
        with pytest.raises(AgentError, match="kept the last good hostfile"):
            agent.refresh(c.settings("master"), AwsClients(failing, c.s3, None), echo=c.echo())
    assert hostfile.read_bytes() == good
    assert (m.root / "opt/amazon/openmpi/etc/openmpi-default-hostfile").read_bytes() == good
    state = State.load(m.root / "var/lib/cfn-chainermn/state.json")
    assert state.steps["hostfile"]["status"] == "failed" and "RequestLimitExceeded" in state.steps["hostfile"]["detail"]


def test_boot_without_required_flags_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_with_boundary(cli, ["node", "boot", "--role", "master", "--imds-url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "--stack is required" in err and "--bucket is required" in err and "--signal-resource" in err



class _SlowMountTarget(System):
    """The seam on a node whose EFS mount target answers only after `failures` tries."""

    failures = 2

    def mount(self, mount_point: str) -> None:
        super().mount(mount_point)  # records the attempt under the test root
        if len([x for x in self.recorded() if x == f"mount {mount_point}"]) <= self.failures:
            raise AgentError("mount.nfs4: Connection timed out")

    def is_mounted(self, mount_point: str) -> bool:
        return len([x for x in self.recorded() if x == f"mount {mount_point}"]) > self.failures


def test_efs_mount_retried_until_target_answers(sim_cluster: SimCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    c = sim_cluster
    monkeypatch.setattr(agent, "System", _SlowMountTarget)
    monkeypatch.setattr(aws_platform, "MOUNT_FIRST_DELAY_S", 0.05)
    state = c.boot("master")
    assert state.steps["efs"]["detail"] == ("EFS fs-0123456789abcdef0 mounted at /efs via /etc/fstab; "
                                           "jobs folder /efs/jobs")
    root = c.nodes["master"].root
    assert _SlowMountTarget(root).recorded().count("mount /efs") == 3
    assert (root / "etc/fstab").read_text() == FSTAB + "\n"


def test_efs_never_answers_fails_the_signal(sim_cluster: SimCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    c = sim_cluster
    monkeypatch.setattr(agent, "System", _SlowMountTarget)
    monkeypatch.setattr(_SlowMountTarget, "failures", 1000)
    monkeypatch.setattr(aws_platform, "MOUNT_FIRST_DELAY_S", 0.05)
    monkeypatch.setattr(aws_platform, "MOUNT_DEADLINE_S", 0.3)
    with pytest.raises(AgentError, match="efs step failed: EFS fs-0123456789abcdef0 not mountable at /efs"):
        agent.boot(c.settings("master"), c.clients("master", status="FAILURE"), echo=c.echo())
    c.stubs[-1].assert_no_pending_responses()
    log = c.get(f"logs/{c.nodes['master'].instance_id}/agent.log").decode()
    assert "security group allows NFS (2049)" in log


def test_signal_api_failure_fails_the_boot(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    clients = c.clients("master", status=None)
    c.stubs[-1].add_client_error("signal_resource", "ValidationError", "Stack demo does not exist")
    with pytest.raises(AgentError, match="signal step failed: SignalResource failed: ValidationError"):
        agent.boot(c.settings("master"), clients, echo=c.echo())
    state = State.load(c.nodes["master"].root / "var/lib/cfn-chainermn/state.json")
    assert state.ready and state.steps["signal"]["status"] == "failed"


def test_a_botocore_failure_outside_aws_call_reads_as_everywhere_else(
        sim_cluster: SimCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step that lets botocore's own error out (no aws_call around its call) fails in aws.py's
    words, as the CLI would print them, not as an unexpected bug."""
    from botocore.exceptions import EndpointConnectionError

    def unreachable(system: System) -> str:
        raise EndpointConnectionError(endpoint_url="https://ec2.test")

    c = sim_cluster
    monkeypatch.setattr(imds_guard, "apply", unreachable)
    with pytest.raises(AgentError) as info:
        agent.boot(c.settings("master"), c.clients("master", status="FAILURE"), echo=c.echo())
    assert str(info.value) == ('imds step failed: cannot reach AWS: Could not connect to the endpoint URL: '
                               '"https://ec2.test"')


def test_refresh_before_boot_names_missing_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_with_boundary(cli, ["node", "refresh", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--stack is required on AWS (no settings saved at" in err and "agent.json" in err
