"""An instance type as EC2's DescribeInstanceTypes describes it, in the table's terms.

`stack create` asks EC2 first, so a type whose GPUs or EFA limits changed, or a type newer than
this release's table, is judged by what EC2 says; the table (instance_types.py) is the fallback
when the call fails, and the price always comes from it. Field meanings: the EC2 API reference,
InstanceTypeInfo, GpuInfo (Gpus[].Name, Count), NetworkInfo (EfaSupported, EfaInfo.
MaximumEfaInterfaces, MaximumNetworkCards, NetworkPerformance).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES, InstanceType


def _gbps(text: str) -> float:
    """25.0 from "Up to 25 Gigabit", 3200.0 from "3200 Gigabit", 400.0 from p4d's "4x 100 Gigabit";
    0 when EC2 gives words only ("High")."""
    found = re.search(r"(?:(\d+)x\s*)?(\d+(?:\.\d+)?)\s*Gigabit", text)
    return int(found.group(1) or 1) * float(found.group(2)) if found else 0.0


def from_description(info: Mapping[str, Any]) -> InstanceType:
    """One InstanceTypeInfo as a table row: EC2's GPUs, vCPUs and EFA limits, the table's price."""
    name = str(info["InstanceType"])
    gpus = info.get("GpuInfo", {}).get("Gpus", [])
    net = info.get("NetworkInfo", {})
    efa = bool(net.get("EfaSupported", False))
    cards = int(net.get("EfaInfo", {}).get("MaximumEfaInterfaces", 0)) if efa else 0
    known = INSTANCE_TYPES.get(name)
    return InstanceType(
        name=name,
        gpus=sum(int(g.get("Count", 0)) for g in gpus),
        gpu_model=str(gpus[0].get("Name", "")) if gpus else "",
        vcpus=int(info.get("VCpuInfo", {}).get("DefaultVCpus", 0)),
        network_gbps=_gbps(str(net.get("NetworkPerformance", ""))),
        efa=efa,
        usd_per_hour=known.usd_per_hour if known else 0.0,
        network_cards=cards,
    )


def differences(live: InstanceType) -> list[str]:
    """What EC2 says that this release's table (and so the template's EFA mapping) does not."""
    known = INSTANCE_TYPES.get(live.name)
    if known is None:
        return [f"{live.name} is not in this release's table"]
    fields = (("GPUs", known.gpus, live.gpus), ("GPU", known.gpu_model, live.gpu_model),
              ("EFA interfaces", known.network_cards, live.network_cards))
    return [f"{live.name}: EC2 says {what} {now}, the table {was}" for what, was, now in fields if was != now]
