"""The console's guard for GPUs the default image cannot drive.

The stack's default image is AWS's Deep Learning Base OSS AMI, whose NVIDIA driver uses the open
kernel modules (Turing and newer) and whose 2026 releases carry branch 595, past V100's last
(580): see catalog/gpus.py for the sources. A V100 type (p3, p3dn) with that image boots but no
GPU job runs, so the template refuses the pair before anything is created, as `stack create`
does (config validation, then preflight for an image it can look at).
"""

from __future__ import annotations

from troposphere import Equals, Not, Or, Template

from cfn_chainermn.catalog.gpus import GPUS
from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES
from cfn_chainermn.config.settings import DEFAULT_AMI_SSM_PARAMETER
from cfn_chainermn.template.parameters import Inputs

RULE = "ClosedDriverGpusNeedAnImage"


def closed_driver_types() -> list[str]:
    """Types whose GPUs the open kernel modules cannot drive (V100 today)."""
    return sorted(name for name, row in INSTANCE_TYPES.items() if not GPUS[row.gpu_model].open_driver)


def add_rules(t: Template, p: Inputs) -> None:
    types = closed_driver_types()
    default_image = Equals(p.ref("ImageSsmParameter"), DEFAULT_AMI_SSM_PARAMETER)
    needs = Or({"Fn::Contains": [types, p.ref("MasterInstanceType")]},
               {"Fn::And": [Not(Equals(p.ref("WorkerCount"), "0")),
                            {"Fn::Contains": [types, p.ref("WorkerInstanceType")]}]})
    t.add_rule(RULE, {
        "RuleCondition": needs,
        "Assertions": [{"Assert": Or(Not(Equals(p.ref("ImageId"), "")), Not(default_image)),
                        "AssertDescription": (
                            f"{', '.join(sorted({INSTANCE_TYPES[n].family for n in types}))} (V100) need NVIDIA's "
                            "proprietary driver, branch 580 or older; the default image (Deep Learning Base OSS "
                            "AMI) cannot drive them. Give ImageId of such an image (cfn-chainermn ami build "
                            "--profile current), or choose another type.")}],
    })
