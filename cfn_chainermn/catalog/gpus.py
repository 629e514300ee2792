"""What each NVIDIA GPU on EC2 needs from an image: its architecture, the oldest CUDA with native
code for it, and which NVIDIA drivers still run it.

Sources (read 2026-12):
- compute capability and the first CUDA that compiles for it: NVIDIA's CUDA GPU list and the
  CUDA release notes (sm_70 V100 CUDA 9.0, sm_75 T4 10.0, sm_80 A100 11.0, sm_86 A10G 11.1,
  sm_89 L4/L40S and sm_90 H100/H200 11.8, sm_100 B200 and sm_120 RTX PRO Blackwell 12.8, sm_103
  B300 12.9); NVIDIA's "CUDA GPU Compute Capability" page for 10.3 (B300) and 12.0 (RTX PRO 6000
  and 4500 Blackwell Server Edition).
- NVIDIA's driver installation guide, "Kernel Modules": the open-source kernel modules (the
  default flavour since the 560 series, and the one AWS's "Base OSS Nvidia Driver" Deep Learning
  AMIs ship) run Turing and newer only; Maxwell, Pascal and Volta need the proprietary modules.
- NVIDIA's Unix driver deprecation schedule: "the release 580 series will be the last to
  support GPUs based on the Maxwell, Pascal, and Volta architectures". The 2026 Deep Learning
  Base AMIs ship driver 595, and their release notes list no P3 among supported_ec2_instances.
So V100 (p3, p3dn) runs only on an image with NVIDIA's proprietary driver, branch 580 or older.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gpu:
    """One GPU model: its compute capability, the CUDA that first compiles for it, its drivers."""

    arch: str  # compute capability, "7.0"
    min_cuda: tuple[int, int]
    open_driver: bool = True  # NVIDIA's open kernel modules drive it (Turing and newer)
    last_driver: int = 0  # the last driver branch that supports it; 0 = still supported

    @property
    def sm(self) -> str:
        return "sm_" + self.arch.replace(".", "")


GPUS: dict[str, Gpu] = {
    "V100": Gpu("7.0", (9, 0), open_driver=False, last_driver=580),
    "T4": Gpu("7.5", (10, 0)),
    "A100": Gpu("8.0", (11, 0)),
    "A10G": Gpu("8.6", (11, 1)),
    "L4": Gpu("8.9", (11, 8)),
    "L40S": Gpu("8.9", (11, 8)),
    "H100": Gpu("9.0", (11, 8)),
    "H200": Gpu("9.0", (11, 8)),
    "B200": Gpu("10.0", (12, 8)),
    "B300": Gpu("10.3", (12, 9)),
    "RTX PRO Server 6000": Gpu("12.0", (12, 8)),  # EC2's name for g7e's RTX PRO 6000 Blackwell Server Edition
    "RTX PRO 4500": Gpu("12.0", (12, 8)),  # g7's RTX PRO 4500 Blackwell Server Edition
}
MIN_CUDA: dict[str, tuple[int, int]] = {model: gpu.min_cuda for model, gpu in GPUS.items()}


def cuda_version(text: str) -> tuple[int, int] | None:
    """(12, 4) from "12.4" or "12.4.1"; None for anything else ("", "12.x")."""
    parts = text.split(".")[:2]
    return (int(parts[0]), int(parts[1])) if len(parts) == 2 and all(x.isdigit() for x in parts) else None


def driver_gap(model: str) -> str | None:
    """Why a current open-driver image (the Deep Learning Base AMI) cannot run `model`, or None."""
    gpu = GPUS.get(model)
    if gpu is None or gpu.open_driver:
        return None
    return (f"{model} ({gpu.sm}) needs NVIDIA's proprietary driver, branch {gpu.last_driver} or older: the open "
            "kernel modules run Turing and newer only, and newer branches dropped it")
