"""Signals for workers added after creation: `stack scale` or Auto Scaling replacing a spot
worker boots a node when WorkerGroup is already complete and no signal is awaited."""

from __future__ import annotations

import pytest
from node_sim import SimCluster

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.errors import AgentError
from cfn_chainermn.node import agent
from cfn_chainermn.node.state import State


def _late_worker_error(c: SimCluster, message: str) -> agent.AwsClients:
    """Clients whose SignalResource answers ValidationError `message` to w1's pinned SUCCESS."""
    w1 = c.nodes["w1"]
    clients = c.clients("w1", status=None)
    c.stubs[-1].add_client_error("signal_resource", "ValidationError", message, expected_params={
        "StackName": c.stack, "LogicalResourceId": "WorkerGroup", "UniqueId": w1.instance_id, "Status": "SUCCESS"})
    return clients


@pytest.mark.parametrize("cfn_state", ["CREATE_COMPLETE", "UPDATE_COMPLETE"])
def test_worker_added_after_creation_boots_ready(sim_cluster: SimCluster, cfn_state: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    c = sim_cluster
    w1 = c.nodes["w1"]
    assert agent.boot(c.settings("master"), c.clients("master"), echo=c.echo()).ready
    clients = _late_worker_error(c, f"Resource WorkerGroup is in {cfn_state} state and cannot be signaled")
    state = agent.boot(c.settings("w1"), clients, echo=c.echo())
    c.stubs[-1].assert_no_pending_responses()  # the signal was tried, with the pinned arguments
    detail = f"no signal awaited (resource already complete): demo/WorkerGroup is {cfn_state}, SUCCESS not sent"
    assert state.ready and state.steps["signal"] == {**state.steps["signal"], "status": "ok", "detail": detail}
    log = c.s3.get_object(Bucket=c.bucket, Key=f"logs/{w1.instance_id}/agent.log")["Body"].read().decode()
    assert " ERROR " not in log and f"signal: {detail}" in log
    capsys.readouterr()
    assert run_with_boundary(cli, ["node", "status", "--root", str(w1.root)]) == 0
    out = capsys.readouterr().out
    assert f"node {w1.instance_id} (worker): ready" in out and f"signal    ok        {detail}" in out


def test_other_validation_error_still_fails_the_boot(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    w1 = c.nodes["w1"]
    assert agent.boot(c.settings("master"), c.clients("master"), echo=c.echo()).ready
    clients = _late_worker_error(c, "Resource WorkerGroup does not exist in stack demo")
    with pytest.raises(AgentError, match="signal step failed: SignalResource failed: ValidationError: "
                                         "Resource WorkerGroup does not exist in stack demo"):
        agent.boot(c.settings("w1"), clients, echo=c.echo())
    c.stubs[-1].assert_no_pending_responses()
    state = State.load(w1.root / "var/lib/cfn-chainermn/state.json")
    assert state.steps["signal"]["status"] == "failed"
    assert "signal    failed    SignalResource failed: ValidationError" in state.render()
