"""The cluster user's NCCL/libfabric environment on a node: EFA where its type has EFA and the
kernel lists the devices, TCP sockets pinned as before everywhere else. Read back the way orted
and the ranks get it: ~/.cfn-chainermn.env sourced by bash, ~/.openmpi/mca-params.conf."""

from __future__ import annotations

import subprocess
from pathlib import Path

from node_sim import SimCluster

OFI = "/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu"
VARS = ("FI_PROVIDER", "FI_EFA_USE_DEVICE_RDMA", "NCCL_NET", "NCCL_SOCKET_IFNAME", "NCCL_DEBUG", "LD_LIBRARY_PATH")


def _image(root: Path, devices: int) -> None:
    """The Deep Learning Base AMI's folders (EFA libfabric, aws-ofi-nccl) and `devices` EFA devices."""
    for d in ("/opt/amazon/efa/lib", OFI):
        (root / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
    sysfs = root / "sys/class/infiniband"
    sysfs.mkdir(parents=True, exist_ok=True)
    for bus in (16, 32, 144, 160)[:devices]:
        (sysfs / f"rdmap{bus}s27").mkdir()


def _shell_env(home: Path) -> dict[str, str]:
    """What a non-interactive ssh command (orted) has after ~/.bashrc: bash itself reads the file."""
    script = '. "$HOME/.bashrc"; ' + "; ".join(f'echo "{v}=${{{v}-<unset>}}"' for v in VARS)
    out = subprocess.run(["env", "-i", f"HOME={home}", "bash", "-c", script],
                         capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def _boot(c: SimCluster, instance_type: str) -> tuple[Path, str]:
    node = c.nodes["master"]
    node.imds.meta["instance-type"] = instance_type
    state = c.boot("master")
    assert state.ready
    return node.root / "home/chainer", state.steps["user"]["detail"]


def test_p4d_with_its_four_devices_gets_efa_with_device_rdma(sim_cluster: SimCluster) -> None:
    _image(sim_cluster.nodes["master"].root, 4)
    home, detail = _boot(sim_cluster, "p4d.24xlarge")
    env = _shell_env(home)
    assert (env["FI_PROVIDER"], env["FI_EFA_USE_DEVICE_RDMA"], env["NCCL_NET"]) == ("efa", "1", "<unset>")
    assert env["NCCL_SOCKET_IFNAME"] == "^lo,docker0"  # NCCL's bootstrap is TCP still
    # NCCL finds libnccl-net.so
    assert env["LD_LIBRARY_PATH"].split(":") == ["/opt/amazon/efa/lib", OFI, "/opt/amazon/ofi-nccl/lib"]
    mca = (home / ".openmpi/mca-params.conf").read_text().splitlines()
    assert mca.index("pml = ^cm") < mca.index(next(line for line in mca if line.startswith("mca_base_env_list")))
    assert "btl = tcp,self" in mca and any(line.startswith("btl_tcp_if_include = ") for line in mca)
    assert detail.endswith("NCCL over EFA (4 of 4 devices)")


def test_g5_efa_leaves_device_rdma_to_libfabric(sim_cluster: SimCluster) -> None:
    _image(sim_cluster.nodes["master"].root, 1)
    home, _ = _boot(sim_cluster, "g5.48xlarge")
    env = _shell_env(home)
    assert env["FI_PROVIDER"] == "efa" and env["FI_EFA_USE_DEVICE_RDMA"] == "<unset>"


def test_efa_type_without_attached_devices_stays_on_sockets(sim_cluster: SimCluster) -> None:
    """A p4d launched without EFA interfaces: TCP, the plugin's folder kept off the library path."""
    _image(sim_cluster.nodes["master"].root, 0)
    home, detail = _boot(sim_cluster, "p4d.24xlarge")
    env = _shell_env(home)
    assert (env["FI_PROVIDER"], env["NCCL_NET"]) == ("<unset>", "Socket")
    assert OFI not in env["LD_LIBRARY_PATH"]
    mca = (home / ".openmpi/mca-params.conf").read_text()
    assert "pml" not in mca and "btl =" not in mca
    assert "p4d.24xlarge can have 4 EFA devices but none is attached" in detail


def test_types_without_efa_keep_pinned_sockets(sim_cluster: SimCluster) -> None:
    home, detail = _boot(sim_cluster, "p3.8xlarge")
    env = _shell_env(home)
    assert {k: env[k] for k in ("NCCL_NET", "NCCL_SOCKET_IFNAME", "NCCL_DEBUG", "FI_PROVIDER")} == {
        "NCCL_NET": "Socket", "NCCL_SOCKET_IFNAME": "^lo,docker0", "NCCL_DEBUG": "WARN", "FI_PROVIDER": "<unset>"}
    assert detail.endswith("NCCL over TCP sockets")
