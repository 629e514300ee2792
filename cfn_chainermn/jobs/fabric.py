"""The network NCCL and OpenMPI talk over: EFA where every node has it, TCP sockets elsewhere.

Pure, so one set of rules serves `job submit`'s mpiexec argv (mpi.py), the files the node agent
writes for the cluster user (the bare `mpiexec` on the master), and `cluster check`, which
counts the EFA devices each node sees. The catalogue says which type has EFA and on how many
network cards (one EFA interface per card: the template attaches them all).

What each choice rests on:

- EFA: `FI_PROVIDER=efa` for libfabric; NCCL reaches it through aws-ofi-nccl, which NCCL loads
  as libnccl-net.so from the library path (NCCL's env docs, NCCL_NET_PLUGIN). Where it lives:
  AWS's EFA + NCCL guide for the Deep Learning AMIs (efa-start-nccl, its mpirun quoted in
  NVIDIA/nccl issue #1597) puts /opt/amazon/ofi-nccl/lib on LD_LIBRARY_PATH; the EFA
  installer's package keeps the library in lib/x86_64-linux-gnu below it (`find / -name
  libnccl-net.so` in awslabs/awsome-distributed-ai PR #935); 2021 images had /opt/aws-ofi-nccl
  (NVIDIA/nccl issue #527's log). The agent puts whichever of them exists on LD_LIBRARY_PATH.
- `FI_EFA_USE_DEVICE_RDMA=1` only where the EFA has RDMA read: libfabric aborts a process that
  sets it on a device without ("FI_EFA_USE_DEVICE_RDMA=1 was set by user, but EFA device has no
  rdma-read capability", ofiwg/libfabric prov/efa/src/rdm/efa_rdm_util.c) and, left unset,
  uses what the device has. p4d/p4de/p5/p5e/p5en have it; p3dn and the g families do not
  (aws/sagemaker-training-toolkit PR #165 narrowed the flag to p4d{e}; AWS's efa-start-nccl
  command, run on p4d/p5 and 8xH200 nodes in NVIDIA/nccl #1597, sets it).
- OpenMPI beside EFA: AWS's NCCL test command (docs.aws.amazon.com efa-start-nccl, quoted in
  NVIDIA/nccl issue #1597) runs `--mca pml ^cm --mca btl tcp,self`: MPI's own messages go over
  TCP (the cm PML would open the EFA devices through the ofi MTL), NCCL's over EFA.
- NCCL's bootstrap is always TCP: NCCL_SOCKET_IFNAME keeps it off lo and docker0, EFA or not.
- TCP: `NCCL_NET=Socket` (NCCL's internal socket network: NCCL env docs, and the name
  ncclNetSocket carries in NVIDIA/nccl src/transport/net_socket.cc), so every rank of a TCP
  job takes NCCL's sockets, whatever plugin its image has and whatever its node's type.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES

EFA = "efa"
TCP = "tcp"
DEVICE_RDMA_FAMILIES = frozenset({"p4d", "p4de", "p5", "p5e", "p5en"})
SOCKETS = {"NCCL_DEBUG": "WARN", "NCCL_SOCKET_IFNAME": "^lo,docker0"}
EFA_MCA = {"pml": "^cm", "btl": "tcp,self"}
# Where aws-ofi-nccl lives on the images the stack boots (only folders that exist are used).
OFI_NCCL_LIB_DIRS = ("/opt/amazon/ofi-nccl/lib/x86_64-linux-gnu", "/opt/amazon/ofi-nccl/lib",
                     "/opt/aws-ofi-nccl/lib")
_DOMAIN = re.compile(r"^\s*domain:\s*(\S+)\s*$")
_ENDPOINT_SUFFIX = re.compile(r"-(rdm|dgrm)$")


def efa_devices(instance_type: str) -> int:
    """The EFA devices a node of this type should see: one per network card, 0 without EFA."""
    row = INSTANCE_TYPES.get(instance_type)
    return row.network_cards if row is not None and row.efa else 0


def fabric(instance_types: Iterable[str], *, attached: bool = True) -> str:
    """EFA when every type has it (and, as a node sees it, its devices are `attached`); TCP when
    any is a known GPU type; "" for local/unknown types only."""
    types = list(instance_types)
    if attached and types and all(efa_devices(t) > 0 for t in types):
        return EFA
    return TCP if any(t in INSTANCE_TYPES for t in types) else ""


def device_rdma(instance_types: Iterable[str]) -> bool:
    """True when every type's EFA has RDMA read (a flag libfabric enforces per process)."""
    types = list(instance_types)
    return bool(types) and all(t.split(".", 1)[0] in DEVICE_RDMA_FAMILIES for t in types)


def nccl_env(instance_types: Iterable[str], *, attached: bool = True) -> dict[str, str]:
    """The variables every rank gets for these node types, in a stable order."""
    types = list(instance_types)
    kind = fabric(types, attached=attached)
    if kind == EFA:
        rdma = {"FI_EFA_USE_DEVICE_RDMA": "1"} if device_rdma(types) else {}
        return {**SOCKETS, "FI_PROVIDER": "efa", **rdma}
    return {**SOCKETS, "NCCL_NET": "Socket"} if kind == TCP else {}


def mpi_mca(instance_types: Iterable[str], *, attached: bool = True) -> dict[str, str]:
    """OpenMPI's own transport beside EFA (nothing to add on TCP)."""
    return dict(EFA_MCA) if fabric(instance_types, attached=attached) == EFA else {}


def fi_info_devices(output: str) -> list[str]:
    """The EFA devices in `fi_info -p efa` output, in order: each device is listed once per
    endpoint type (`rdmap0s29-rdm`, `rdmap0s29-dgrm`) and, with libfabric 2, per fabric (`efa`,
    `efa-direct`), so the domains are counted without their endpoint suffix. No EFA (or no
    fi_info) prints `fi_getinfo: -61` or nothing: no device."""
    seen: dict[str, None] = {}
    for line in output.splitlines():
        match = _DOMAIN.match(line)
        if match:
            seen[_ENDPOINT_SUFFIX.sub("", match.group(1))] = None
    return list(seen)
