"""The fabric rules: which node types get EFA's environment, which keep TCP sockets, and how
`fi_info -p efa` output is counted."""

from __future__ import annotations

import pytest

from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES
from cfn_chainermn.jobs import fabric

SOCKETS = {"NCCL_DEBUG": "WARN", "NCCL_SOCKET_IFNAME": "^lo,docker0"}


def _block(domain: str, fabric_name: str = "efa", ep: str = "FI_EP_RDM", version: str = "122.0") -> str:
    """One entry as fi_info prints it (layout of the outputs cited below)."""
    return (f"provider: efa\n    fabric: {fabric_name}\n    domain: {domain}\n    version: {version}\n"
            f"    type: {ep}\n    protocol: FI_PROTO_EFA\n")


# p4d.24xlarge, `fi_info -p efa -t FI_EP_RDM`, libfabric 1.22 (version 122.0): the four devices p4d
# shows, as in skypilot-org/skypilot examples/aws_efa/README.md (which prints the first two, then "...").
P4D_RDM = "".join(_block(f"rdmap{bus}s27-rdm") for bus in (16, 32, 144, 160))
# A single-EFA node, plain `fi_info -p efa`: the device once per endpoint type (rdm and dgrm).
ONE_DEVICE = _block("rdmap0s29-rdm") + _block("rdmap0s29-dgrm", ep="FI_EP_DGRAM")
# No EFA device: fi_info's own words (aws-samples/aws-hpc-tutorials content/07-EFA/02-check-efa.md).
NO_EFA = "fi_getinfo: -61\n"


def test_fi_info_counts_devices_not_entries() -> None:
    assert fabric.fi_info_devices(P4D_RDM) == ["rdmap16s27", "rdmap32s27", "rdmap144s27", "rdmap160s27"]
    assert fabric.fi_info_devices(ONE_DEVICE) == ["rdmap0s29"]
    assert fabric.fi_info_devices(NO_EFA) == [] and fabric.fi_info_devices("") == []


def test_libfabric_2_lists_each_device_under_both_rdm_fabrics() -> None:
    """libfabric 2 offers RDM endpoints on two fabrics, `efa` and `efa-direct` (fi_efa(7)): one device."""
    two_fabrics = _block("rdmap0s29-rdm") + _block("rdmap0s29-rdm", "efa-direct") + \
        _block("rdmap0s29-dgrm", ep="FI_EP_DGRAM")
    assert fabric.fi_info_devices(two_fabrics) == ["rdmap0s29"]


def test_efa_device_count_is_the_types_network_cards() -> None:
    assert fabric.efa_devices("p5.48xlarge") == 32 and fabric.efa_devices("p4d.24xlarge") == 4
    assert fabric.efa_devices("g5.48xlarge") == 1
    assert fabric.efa_devices("p3.16xlarge") == 0 and fabric.efa_devices("local") == 0


@pytest.mark.parametrize("itype", ["p4d.24xlarge", "p5.48xlarge"])
def test_types_with_rdma_read_get_device_rdma(itype: str) -> None:
    assert fabric.nccl_env([itype]) == {**SOCKETS, "FI_PROVIDER": "efa", "FI_EFA_USE_DEVICE_RDMA": "1"}
    assert fabric.mpi_mca([itype]) == {"pml": "^cm", "btl": "tcp,self"}


@pytest.mark.parametrize("itype", ["p3dn.24xlarge", "g4dn.metal", "g5.48xlarge", "g6.12xlarge"])
def test_efa_without_rdma_read_leaves_the_flag_to_libfabric(itype: str) -> None:
    """Set on a device without RDMA read, FI_EFA_USE_DEVICE_RDMA=1 aborts every rank."""
    assert fabric.nccl_env([itype]) == {**SOCKETS, "FI_PROVIDER": "efa"}


def test_every_catalogue_type_gets_one_of_the_two_fabrics() -> None:
    for name, row in INSTANCE_TYPES.items():
        env = fabric.nccl_env([name])
        assert ("FI_PROVIDER" in env) == row.efa and ("NCCL_NET" in env) == (not row.efa), name
        assert env["NCCL_SOCKET_IFNAME"] == "^lo,docker0"


def test_tcp_types_take_nccl_sockets_and_openmpi_defaults() -> None:
    assert fabric.nccl_env(["p3.16xlarge"]) == {**SOCKETS, "NCCL_NET": "Socket"}
    assert fabric.mpi_mca(["p3.16xlarge"]) == {}


def test_one_node_without_efa_puts_every_rank_on_sockets() -> None:
    """A p4d job that also reaches a g5.xlarge: NCCL cannot mix transports, so all take TCP."""
    assert fabric.fabric(["p4d.24xlarge", "g5.xlarge"]) == fabric.TCP
    assert fabric.nccl_env(["p4d.24xlarge", "g5.xlarge"])["NCCL_NET"] == "Socket"
    assert not fabric.device_rdma(["p4d.24xlarge", "g5.48xlarge"])
    assert fabric.nccl_env(["p4d.24xlarge", "g5.48xlarge"]) == {**SOCKETS, "FI_PROVIDER": "efa"}


def test_local_and_unknown_nodes_get_nothing() -> None:
    assert fabric.nccl_env(["local"]) == {} and fabric.mpi_mca(["local"]) == {}
    assert fabric.fabric([]) == "" and fabric.nccl_env([]) == {}
