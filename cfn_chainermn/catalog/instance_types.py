"""GPU instance types the cluster supports.

One table feeds the template's AllowedValues and EFA mapping, slots per node in the hostfile,
config validation, the vCPU quota and CUDA preflight, and the cost estimate. At `stack create`,
EC2's DescribeInstanceTypes is asked first (stack/preflight.py, catalog/live.py); this table is
the fallback and what the console template offers.

Sources: the EC2 "accelerated computing" instance specifications (GPUs, vCPUs, network
bandwidth, EFA, network cards) and DescribeInstanceTypes' NetworkInfo (EfaSupported,
EfaInfo.MaximumEfaInterfaces, MaximumNetworkCards); the GPUs themselves are in gpus.py. EFA
interfaces go one per network card (EC2 user guide, "Maximize network bandwidth on Amazon EC2
instances with multiple network cards"), so `network_cards` is the number of EFA interfaces the
template attaches. Prices are On-Demand list prices in us-east-1 on PRICES_AS_OF; 0 means the
table has no list price for the type (the estimate says so); other regions and Spot differ.
"""

from __future__ import annotations

from dataclasses import dataclass

from cfn_chainermn.catalog.gpus import GPUS, MIN_CUDA, cuda_version

__all__ = ["DEFAULT_INSTANCE_TYPE", "GPUS", "INSTANCE_TYPES", "MIN_CUDA", "PRICES_AS_OF", "PRICE_REGION",
           "VCPU_QUOTA_CODES", "CostEstimate", "InstanceType", "cuda_too_old", "estimate", "families_for_cuda",
           "gpus_of", "lookup"]

PRICES_AS_OF = "2025-05-01"
PRICE_REGION = "us-east-1"


@dataclass(frozen=True)
class InstanceType:
    name: str
    gpus: int
    gpu_model: str
    vcpus: int
    network_gbps: float  # the "up to" figure where AWS gives a burst rate
    efa: bool
    usd_per_hour: float  # 0 = no list price in the table
    network_cards: int = 0  # max EFA interfaces (= network cards) on EFA types, 0 where there is no EFA

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def quota_class(self) -> str:
        """The Service Quotas class: P instances or G and VT instances."""
        return "P" if self.family.startswith("p") else "G"

    @property
    def arch(self) -> str:
        """The GPU's compute capability ("7.0" for V100)."""
        return GPUS[self.gpu_model].arch

    @property
    def min_cuda(self) -> tuple[int, int]:
        """The oldest CUDA toolkit with native code for the GPU."""
        return GPUS[self.gpu_model].min_cuda


def _t(name: str, gpus: int, model: str, vcpus: int, gbps: float, cards: int, usd: float) -> InstanceType:
    """A row; `cards` is the number of EFA-capable network cards, 0 for a type without EFA."""
    return InstanceType(name, gpus, model, vcpus, gbps, cards > 0, usd, cards)


_TABLE: tuple[InstanceType, ...] = (
    _t("p3.2xlarge", 1, "V100", 8, 10, 0, 3.06),
    _t("p3.8xlarge", 4, "V100", 32, 10, 0, 12.24),
    _t("p3.16xlarge", 8, "V100", 64, 25, 0, 24.48),
    _t("p3dn.24xlarge", 8, "V100", 96, 100, 1, 31.212),
    _t("p4d.24xlarge", 8, "A100", 96, 400, 4, 32.7726),
    _t("p4de.24xlarge", 8, "A100", 96, 400, 4, 0),
    _t("p5.48xlarge", 8, "H100", 192, 3200, 32, 98.32),
    _t("p5e.48xlarge", 8, "H200", 192, 3200, 32, 0),
    _t("p5en.48xlarge", 8, "H200", 192, 3200, 16, 0),
    _t("p6-b200.48xlarge", 8, "B200", 192, 3200, 8, 0),
    _t("p6-b300.48xlarge", 8, "B300", 192, 6400, 16, 0),
    _t("p5.4xlarge", 1, "H100", 16, 100, 1, 0),
    _t("g4dn.xlarge", 1, "T4", 4, 25, 0, 0.526),
    _t("g4dn.2xlarge", 1, "T4", 8, 25, 0, 0.752),
    _t("g4dn.4xlarge", 1, "T4", 16, 25, 0, 1.204),
    _t("g4dn.8xlarge", 1, "T4", 32, 50, 1, 2.176),
    _t("g4dn.12xlarge", 4, "T4", 48, 50, 1, 3.912),
    _t("g4dn.16xlarge", 1, "T4", 64, 50, 1, 4.352),
    _t("g4dn.metal", 8, "T4", 96, 100, 1, 7.824),
    _t("g5.xlarge", 1, "A10G", 4, 10, 0, 1.006),
    _t("g5.2xlarge", 1, "A10G", 8, 10, 0, 1.212),
    _t("g5.4xlarge", 1, "A10G", 16, 25, 0, 1.624),
    _t("g5.8xlarge", 1, "A10G", 32, 25, 1, 2.448),
    _t("g5.12xlarge", 4, "A10G", 48, 40, 1, 5.672),
    _t("g5.16xlarge", 1, "A10G", 64, 25, 1, 4.096),
    _t("g5.24xlarge", 4, "A10G", 96, 50, 1, 8.144),
    _t("g5.48xlarge", 8, "A10G", 192, 100, 1, 16.288),
    _t("g6.xlarge", 1, "L4", 4, 10, 0, 0.8048),
    _t("g6.2xlarge", 1, "L4", 8, 10, 0, 0.9776),
    _t("g6.4xlarge", 1, "L4", 16, 25, 0, 1.3232),
    _t("g6.8xlarge", 1, "L4", 32, 25, 1, 2.0144),
    _t("g6.12xlarge", 4, "L4", 48, 40, 1, 4.6016),
    _t("g6.16xlarge", 1, "L4", 64, 25, 1, 3.3968),
    _t("g6.24xlarge", 4, "L4", 96, 50, 1, 6.6752),
    _t("g6.48xlarge", 8, "L4", 192, 100, 1, 13.3504),
    _t("gr6.4xlarge", 1, "L4", 16, 25, 0, 0),
    _t("gr6.8xlarge", 1, "L4", 32, 25, 1, 0),
    _t("g6e.xlarge", 1, "L40S", 4, 20, 0, 0),
    _t("g6e.2xlarge", 1, "L40S", 8, 20, 0, 0),
    _t("g6e.4xlarge", 1, "L40S", 16, 20, 0, 0),
    _t("g6e.8xlarge", 1, "L40S", 32, 25, 1, 0),
    _t("g6e.12xlarge", 4, "L40S", 48, 100, 1, 0),
    _t("g6e.16xlarge", 1, "L40S", 64, 35, 1, 0),
    _t("g6e.24xlarge", 4, "L40S", 96, 200, 2, 0),
    _t("g6e.48xlarge", 8, "L40S", 192, 400, 4, 30.131),
    _t("g7.2xlarge", 1, "RTX PRO 4500", 8, 60, 0, 0),
    _t("g7.4xlarge", 1, "RTX PRO 4500", 16, 100, 0, 0),
    _t("g7.8xlarge", 1, "RTX PRO 4500", 32, 100, 1, 0),
    _t("g7.12xlarge", 2, "RTX PRO 4500", 48, 175, 1, 0),
    _t("g7.24xlarge", 4, "RTX PRO 4500", 96, 350, 1, 0),
    _t("g7.48xlarge", 8, "RTX PRO 4500", 192, 700, 2, 0),
    _t("g7e.2xlarge", 1, "RTX PRO Server 6000", 8, 50, 0, 0),
    _t("g7e.4xlarge", 1, "RTX PRO Server 6000", 16, 50, 0, 0),
    _t("g7e.8xlarge", 1, "RTX PRO Server 6000", 32, 100, 1, 0),
    _t("g7e.12xlarge", 2, "RTX PRO Server 6000", 48, 400, 1, 0),
    _t("g7e.24xlarge", 4, "RTX PRO Server 6000", 96, 800, 2, 0),
    _t("g7e.48xlarge", 8, "RTX PRO Server 6000", 192, 1600, 4, 0),
)

INSTANCE_TYPES: dict[str, InstanceType] = {t.name: t for t in _TABLE}
DEFAULT_INSTANCE_TYPE = "g6.xlarge"  # L4: the default image (open kernel modules, CUDA 12/13) drives it; V100 it cannot

# Service Quotas codes (service code "ec2") for running vCPUs, by quota class.
VCPU_QUOTA_CODES: dict[tuple[str, bool], str] = {
    ("P", False): "L-417A185B",  # Running On-Demand P instances
    ("G", False): "L-DB2E81BA",  # Running On-Demand G and VT instances
    ("P", True): "L-7212CCBC",  # All P Spot Instance Requests
    ("G", True): "L-3819A6DF",  # All G and VT Spot Instance Requests
}


def lookup(name: str) -> InstanceType:
    """The table row for `name`; KeyError names the known types."""
    try:
        return INSTANCE_TYPES[name]
    except KeyError:
        raise KeyError(f"unknown instance type {name!r}; known: {', '.join(INSTANCE_TYPES)}") from None


def gpus_of(name: str, default: int = 1) -> int:
    """Slots for a node: its GPU count, or `default` for types outside the table (local nodes)."""
    row = INSTANCE_TYPES.get(name)
    return row.gpus if row else default


def cuda_too_old(name: str, cuda: str) -> str | None:
    """Why CUDA `cuda` ("11.0") cannot drive instance type `name`'s GPUs, or None when it can (or is unknown)."""
    row = INSTANCE_TYPES.get(name)
    need = MIN_CUDA.get(row.gpu_model) if row else None
    have = cuda_version(cuda)
    if row is None or need is None or have is None or have >= need:
        return None
    return f"the {row.gpu_model} GPUs of {name} need CUDA {need[0]}.{need[1]} or newer"


def families_for_cuda(cuda: str) -> list[str]:
    """Instance families ("p3", "g4dn", ...) whose GPUs CUDA `cuda` drives natively."""
    have = cuda_version(cuda)
    fams = [t.name.split(".")[0] for t in _TABLE if have is not None and have >= MIN_CUDA.get(t.gpu_model, (99, 0))]
    return list(dict.fromkeys(fams))


@dataclass(frozen=True)
class CostEstimate:
    nodes: int
    usd_per_hour: float
    gpus: int
    as_of: str = PRICES_AS_OF
    region: str = PRICE_REGION

    unpriced: tuple[str, ...] = ()  # types the table has no list price for

    def describe(self) -> str:
        if self.unpriced:
            return (f"{self.nodes} nodes, {self.gpus} GPUs: no list price in the table for "
                    f"{', '.join(self.unpriced)}; see the EC2 On-Demand pricing page")
        return (
            f"{self.nodes} nodes, {self.gpus} GPUs: about ${self.usd_per_hour:,.2f}/h On-Demand "
            f"({self.region} list prices as of {self.as_of}; other regions and Spot differ)"
        )


def estimate(master: str, worker: str, workers: int) -> CostEstimate:
    """Hourly On-Demand cost of one master plus `workers` workers."""
    m, w = lookup(master), lookup(worker)
    return CostEstimate(
        nodes=1 + workers,
        usd_per_hour=round(m.usd_per_hour + workers * w.usd_per_hour, 4),
        gpus=m.gpus + workers * w.gpus,
        unpriced=tuple(dict.fromkeys(t.name for t in (m, *([w] if workers else [])) if not t.usd_per_hour)),
    )
