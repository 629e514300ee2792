"""jobs/submit.py: what `job submit` checks, in which order, before anything runs.

The run itself (folder, mpiexec, exit code, launch failures) is exercised end to end on a real
local cluster (tests/local/test_jobs_e2e.py); here the order is the specification: a request that
cannot be sound is refused before any lookup, and a cluster that cannot take it before any
connection.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cfn_chainermn.cluster.handle import Cluster
from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.errors import CfnChainermnError, ConfigError
from cfn_chainermn.jobs import mpi
from cfn_chainermn.jobs.submit import Request, submit


def _never(*args: Any) -> Any:
    raise AssertionError("reached a step that bad input must never reach")


def _cluster(nodes: list[Node]) -> Cluster:
    return Cluster(name="demo", kind="aws", master_host="203.0.113.10", ssh_port=22, user="chainer",
                   key_file="/k.pem", master_host_key=None, shared="/efs", python=None,
                   network=mpi.Network(cidr="10.0.0.0/16", instance_type="p3.16xlarge"), list_nodes=lambda: nodes)


def _submit(request: Request, *, resolve: Any = _never, environ: dict[str, str] | None = None) -> Any:
    return submit(request, resolve=resolve, connect=_never, environ=environ or {}, on_line=_never,
                  on_started=_never)


def test_a_bad_env_is_refused_before_the_cluster_is_looked_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--env"):
        _submit(Request(script=tmp_path / "t.py", np=2, env=("NOEQUALS",)))


def test_a_secret_missing_from_the_environment_is_refused_before_the_lookup(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--secret-env"):
        _submit(Request(script=tmp_path / "t.py", np=2, secret_env=("TOKEN",)), environ={})


def test_no_ready_node_is_named_before_any_connection(tmp_path: Path) -> None:
    down = Node("i-0master", "10.0.0.10", "master", "p3.16xlarge", ready=False)
    with pytest.raises(CfnChainermnError, match=r"no ready node in demo; `cfn-chainermn hostfile demo --wait 1`"):
        _submit(Request(script=tmp_path / "t.py", np=2), resolve=lambda: _cluster([down]))


def test_more_ranks_than_slots_is_a_usage_error_naming_the_cluster(tmp_path: Path) -> None:
    master = Node("i-0master", "10.0.0.10", "master", "p3.16xlarge")  # 8 GPUs: 8 slots
    with pytest.raises(ConfigError) as info:
        _submit(Request(script=tmp_path / "t.py", np=9, per_node=8), resolve=lambda: _cluster([master]))
    assert "demo" in str(info.value) and "NAME" not in str(info.value)
