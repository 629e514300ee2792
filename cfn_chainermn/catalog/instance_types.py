"""GPU instance types the cluster supports.

One table feeds the template's AllowedValues, slots per node in the hostfile, config validation,
the vCPU quota preflight and the cost estimate. Prices are On-Demand list prices in us-east-1
on PRICES_AS_OF; other regions and Spot differ, so the estimate says so.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    usd_per_hour: float
    network_cards: int = 0  # max EFA interfaces (= network cards) on EFA types, 0 where there is no EFA

    @property
    def arch(self) -> str:
        """The GPU's compute capability ("7.0" for V100)."""
        return GPUS[self.gpu_model].arch

    @property
    def min_cuda(self) -> tuple[int, int]:
        """The oldest CUDA toolkit with native code for the GPU."""
        return GPUS[self.gpu_model].min_cuda

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def quota_class(self) -> str:
        """The Service Quotas class: P instances or G and VT instances."""
        return "P" if self.family.startswith("p") else "G"


@dataclass(frozen=True)
class Gpu:
    """What a GPU model needs from the image: its architecture and the CUDA that first compiles for it."""

    arch: str
    min_cuda: tuple[int, int]


# The oldest CUDA with native code (SASS) for each GPU: V100 sm_70, T4 sm_75, A100 sm_80,
# A10G sm_86 (CUDA 11.1), L4 sm_89 and H100 sm_90 (CUDA 11.8).
GPUS: dict[str, Gpu] = {
    "V100": Gpu("7.0", (9, 0)), "T4": Gpu("7.5", (10, 0)), "A100": Gpu("8.0", (11, 0)),
    "A10G": Gpu("8.6", (11, 1)), "L4": Gpu("8.9", (11, 8)), "H100": Gpu("9.0", (11, 8))}
MIN_CUDA: dict[str, tuple[int, int]] = {model: gpu.min_cuda for model, gpu in GPUS.items()}


def _t(name: str, gpus: int, model: str, vcpus: int, gbps: float, efa: bool, usd: float) -> InstanceType:
    cards = {"p3dn.24xlarge": 1, "p4d.24xlarge": 4, "p5.48xlarge": 32}.get(name, 1) if efa else 0
    return InstanceType(name, gpus, model, vcpus, gbps, efa, usd, cards)


_TABLE: tuple[InstanceType, ...] = (
    _t("p3.2xlarge", 1, "V100", 8, 10, False, 3.06),
    _t("p3.8xlarge", 4, "V100", 32, 10, False, 12.24),
    _t("p3.16xlarge", 8, "V100", 64, 25, False, 24.48),
    _t("p3dn.24xlarge", 8, "V100", 96, 100, True, 31.212),
    _t("p4d.24xlarge", 8, "A100", 96, 400, True, 32.7726),
    _t("p5.48xlarge", 8, "H100", 192, 3200, True, 98.32),
    _t("g4dn.xlarge", 1, "T4", 4, 25, False, 0.526),
    _t("g4dn.2xlarge", 1, "T4", 8, 25, False, 0.752),
    _t("g4dn.4xlarge", 1, "T4", 16, 25, False, 1.204),
    _t("g4dn.8xlarge", 1, "T4", 32, 50, True, 2.176),
    _t("g4dn.12xlarge", 4, "T4", 48, 50, True, 3.912),
    _t("g4dn.16xlarge", 1, "T4", 64, 50, True, 4.352),
    _t("g4dn.metal", 8, "T4", 96, 100, True, 7.824),
    _t("g5.xlarge", 1, "A10G", 4, 10, False, 1.006),
    _t("g5.2xlarge", 1, "A10G", 8, 10, False, 1.212),
    _t("g5.4xlarge", 1, "A10G", 16, 25, False, 1.624),
    _t("g5.8xlarge", 1, "A10G", 32, 25, True, 2.448),
    _t("g5.12xlarge", 4, "A10G", 48, 40, True, 5.672),
    _t("g5.16xlarge", 1, "A10G", 64, 25, True, 4.096),
    _t("g5.24xlarge", 4, "A10G", 96, 50, True, 8.144),
    _t("g5.48xlarge", 8, "A10G", 192, 100, True, 16.288),
    _t("g6.xlarge", 1, "L4", 4, 10, False, 0.8048),
    _t("g6.2xlarge", 1, "L4", 8, 10, False, 0.9776),
    _t("g6.4xlarge", 1, "L4", 16, 25, False, 1.3232),
    _t("g6.8xlarge", 1, "L4", 32, 25, True, 2.0144),
    _t("g6.12xlarge", 4, "L4", 48, 40, True, 4.6016),
    _t("g6.16xlarge", 1, "L4", 64, 25, True, 3.3968),
    _t("g6.24xlarge", 4, "L4", 96, 50, True, 6.6752),
    _t("g6.48xlarge", 8, "L4", 192, 100, True, 13.3504),
)

INSTANCE_TYPES: dict[str, InstanceType] = {t.name: t for t in _TABLE}
DEFAULT_INSTANCE_TYPE = "p3.2xlarge"

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


def _version(text: str) -> tuple[int, int] | None:
    parts = text.split(".")[:2]
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 and all(x.isdigit() for x in parts) else None


def cuda_too_old(name: str, cuda: str) -> str | None:
    """Why CUDA `cuda` ("11.0") cannot drive instance type `name`'s GPUs, or None when it can (or is unknown)."""
    row = INSTANCE_TYPES.get(name)
    need = MIN_CUDA.get(row.gpu_model) if row else None
    have = _version(cuda)
    if row is None or need is None or have is None or have >= need:
        return None
    return f"the {row.gpu_model} GPUs of {name} need CUDA {need[0]}.{need[1]} or newer"


def families_for_cuda(cuda: str) -> list[str]:
    """Instance families ("p3", "g4dn", ...) whose GPUs CUDA `cuda` drives natively."""
    have = _version(cuda)
    fams = [t.name.split(".")[0] for t in _TABLE if have is not None and have >= MIN_CUDA.get(t.gpu_model, (99, 0))]
    return list(dict.fromkeys(fams))


@dataclass(frozen=True)
class CostEstimate:
    nodes: int
    usd_per_hour: float
    gpus: int
    as_of: str = PRICES_AS_OF
    region: str = PRICE_REGION

    def describe(self) -> str:
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
    )
