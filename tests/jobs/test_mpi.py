"""mpiexec argv: the settings chosen from the instance type, and quoting."""

from __future__ import annotations

import pytest

from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.errors import ConfigError
from cfn_chainermn.jobs import mpi


def _mca(argv: list[str]) -> dict[str, str]:
    return {argv[i + 1]: argv[i + 2] for i, word in enumerate(argv) if word == "--mca"}


def _x(argv: list[str]) -> dict[str, str]:
    """The variables every rank gets: set by `env` before mpiexec, forwarded by name."""
    assert "-x" not in argv  # OpenMPI refuses -x beside the agent's mca_base_env_list
    if argv[0] != "env":
        assert "mca_base_env_list" not in _mca(argv)  # the agent's file (PATH) applies as is
        return {}
    start = argv.index("mpiexec")
    env = dict(word.split("=", 1) for word in argv[1:start])
    assert _mca(argv)["mca_base_env_list"].split(";") == ["PATH", *env]
    return env


LOCAL = mpi.Network(cidr=mpi.LOOPBACK_CIDR, instance_type="local", ssh_port=2222)


def test_local_cluster_pins_loopback_and_unbinds() -> None:
    job = mpi.Job(program="/s/jobs/1/train.py", np=3, per_node=1, args=("--dataset", "digits"),
                  python="/v/bin/python", hostfile="/s/jobs/1/hostfile", workdir="/s/jobs/1")
    argv = mpi.mpiexec_argv(job, LOCAL)
    assert argv[:9] == ["mpiexec", "-n", "3", "-N", "1", "--hostfile", "/s/jobs/1/hostfile", "--wdir", "/s/jobs/1"]
    assert argv[9:11] == ["--bind-to", "none"]
    assert _mca(argv) == {
        "btl_tcp_if_include": "127.0.0.0/8", "oob_tcp_if_include": "127.0.0.0/8", "plm_rsh_no_tree_spawn": "1",
        "rtc": "^hwloc", "hwloc_base_binding_policy": "none", "mpi_yield_when_idle": "1",
        "plm_rsh_args": "-p 2222"}
    assert _x(argv) == {}
    assert argv[-4:] == ["/v/bin/python", "/s/jobs/1/train.py", "--dataset", "digits"]


def test_gpu_instance_gets_subnet_and_nccl_sockets_without_binding_changes() -> None:
    net = mpi.Network(cidr="10.0.0.0/24", instance_type="p3.16xlarge")
    argv = mpi.mpiexec_argv(mpi.Job(program="/efs/train_mnist.py", np=32, per_node=8, args=("-g",),
                                    python="python3"), net)
    assert "--bind-to" not in argv and "--hostfile" not in argv
    mca = _mca(argv)
    assert mca["btl_tcp_if_include"] == mca["oob_tcp_if_include"] == "10.0.0.0/24"
    assert "mpi_yield_when_idle" not in mca and "plm_rsh_args" not in mca
    assert "pml" not in mca and "btl" not in mca  # OpenMPI's defaults beside TCP
    assert _x(argv) == {"NCCL_DEBUG": "WARN", "NCCL_SOCKET_IFNAME": "^lo,docker0", "NCCL_NET": "Socket"}
    assert argv[-3:] == ["python3", "/efs/train_mnist.py", "-g"]


def test_efa_cluster_gets_libfabric_and_keeps_mpi_off_the_efa_devices() -> None:
    """p4d: FI_PROVIDER=efa with device RDMA for NCCL, MPI's own messages over pinned TCP."""
    net = mpi.Network(cidr="10.0.0.0/24", instance_type="p4d.24xlarge")
    argv = mpi.mpiexec_argv(mpi.Job(program="/efs/train_mnist.py", np=16, per_node=8, python="python3"), net)
    mca = _mca(argv)
    assert (mca["pml"], mca["btl"], mca["btl_tcp_if_include"]) == ("^cm", "tcp,self", "10.0.0.0/24")
    assert _x(argv) == {"NCCL_DEBUG": "WARN", "NCCL_SOCKET_IFNAME": "^lo,docker0", "FI_PROVIDER": "efa",
                        "FI_EFA_USE_DEVICE_RDMA": "1"}


def test_efa_type_without_efa_attached_keeps_tcp_sockets() -> None:
    """Efa off: a p4d stack has no EFA interface, so NCCL and MPI stay on the pinned sockets."""
    net = mpi.Network(cidr="10.0.0.0/24", instance_type="p4d.24xlarge", efa_attached=False)
    argv = mpi.mpiexec_argv(mpi.Job(program="/efs/train_mnist.py", np=16, per_node=8, python="python3"), net)
    env = _x(argv)
    assert "FI_PROVIDER" not in env and "FI_EFA_USE_DEVICE_RDMA" not in env and env["NCCL_NET"] == "Socket"
    assert "pml" not in _mca(argv)


def test_a_job_takes_the_fabric_of_the_nodes_it_fills() -> None:
    """A g5.xlarge master (no EFA) before p4d workers: a job reaching a worker runs on TCP sockets
    everywhere; one that stays on the master's GPU needs no network at all, and says TCP too."""
    nodes = [Node("i-m", "10.0.0.10", "master", "g5.xlarge"), Node("i-w1", "10.0.0.11", "worker", "p4d.24xlarge"),
             Node("i-w2", "10.0.0.12", "worker", "p4d.24xlarge")]
    net = mpi.Network(cidr="10.0.0.0/24", instance_type="g5.xlarge")
    mixed = mpi.on_nodes(net, nodes, np=9)
    assert mixed.types == ("g5.xlarge", "p4d.24xlarge")
    argv = mpi.mpiexec_argv(mpi.Job(program="a.sh", np=9), mixed)
    assert _x(argv)["NCCL_NET"] == "Socket" and "FI_PROVIDER" not in _x(argv) and "pml" not in _mca(argv)
    assert mpi.on_nodes(net, nodes, np=1).types == ("g5.xlarge",)
    workers = mpi.on_nodes(net, nodes[1:], np=16, per_node=8)
    assert workers.types == ("p4d.24xlarge",)
    assert _x(mpi.mpiexec_argv(mpi.Job(program="a.sh", np=16), workers))["FI_PROVIDER"] == "efa"


def test_user_env_follows_and_overrides_nccl_defaults() -> None:
    net = mpi.Network(cidr="10.0.0.0/24", instance_type="g5.12xlarge")
    job = mpi.Job(program="a.sh", np=4, env=mpi.parse_env(["NCCL_DEBUG=INFO", "MSG=hello world; $HOME",
                                                           "FI_PROVIDER=tcp"]))
    argv = mpi.mpiexec_argv(job, net)
    assert _x(argv)["NCCL_DEBUG"] == "INFO" and _x(argv)["MSG"] == "hello world; $HOME"
    assert _x(argv)["FI_PROVIDER"] == "tcp"  # the user's word over the fabric's
    assert argv[-1] == "a.sh"  # not a .py: run as is, no interpreter


@pytest.mark.parametrize(("item", "fragment"), [("NOEQUALS", "NAME=VALUE"), ("1X=2", "NAME=VALUE"),
                                                ("=v", "NAME=VALUE")])
def test_bad_env_is_a_usage_error(item: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        mpi.parse_env([item])


@pytest.mark.parametrize(("np", "per_node", "flag"), [(0, None, "-n"), (2, 0, "-N")])
def test_bad_counts_name_the_flag(np: int, per_node: int | None, flag: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{flag}:"):
        mpi.mpiexec_argv(mpi.Job(program="x", np=np, per_node=per_node), LOCAL)
