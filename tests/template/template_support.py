"""Shared by the template tests (imported as `template_support`; tests are not a package):
the variants that between them cover every choice the template offers, and the cfn-lint call.

The variants differ only in parameter Defaults, but cfn-lint and checkov resolve Refs through
those Defaults, so each variant really is checked with its own values. Two instance types per
variant (master and workers) cover all seven families in four templates.
"""

from __future__ import annotations

from typing import Any

from cfn_chainermn.config.model import ClusterConfig, build

VPC, SUBNET, RTB = "vpc-0123456789abcdef0", "subnet-0123456789abcdef0", "rtb-0123456789abcdef0"
FS, SG = "fs-0123456789abcdef0", "sg-0123456789abcdef0"

VARIANTS: dict[str, dict[str, Any]] = {
    # the released template: new VPC and subnet, new EFS, 1 worker, p3
    "released": {},
    # with idle shutdown's delete, whose service role names the existing route table
    "existing-vpc-new-subnet": {
        "network": {"vpc_id": VPC, "route_table_id": RTB}, "efs": {"mode": "none"}, "workers": 0,
        "idle": {"minutes": "60"},
        "instance_type": "p3dn.24xlarge", "worker_instance_type": "p4d.24xlarge",
        "ami": "ami-0123456789abcdef0",  # V100 needs an image with NVIDIA's proprietary driver (template/gpu.py)
    },
    "existing-subnet": {
        "network": {"vpc_id": VPC, "subnet_id": SUBNET},
        "efs": {"mode": "existing", "file_system_id": FS, "security_group_id": SG},
        "workers": 64, "spot_workers": True, "spot_instance_types": "g5.12xlarge,g6.12xlarge",
        "tenancy": "dedicated", "ami": "ami-0123456789abcdef0",
        "instance_type": "p5.48xlarge", "worker_instance_type": "g4dn.12xlarge",
        "key_name": "my-key", "ssh_cidr": "203.0.113.7/32",
    },
    "new-network-custom": {
        "network": {"vpc_cidr": "172.31.0.0/16", "subnet_cidr": "172.31.8.0/22", "availability_zone": "us-east-1b"},
        "efs": {"mode": "new", "performance_mode": "maxIO", "throughput_mode": "bursting", "mount_point": "/shared"},
        "workers": 256, "instance_type": "g5.48xlarge", "worker_instance_type": "g6.xlarge",
        "agent_index_url": "https://pypi.example.org/simple", "root_volume_size": 500,
        # the widest range allowed without opt-in, and the opt-in itself (lint and checkov see "true")
        "ssh_cidr": "10.0.0.0/8", "allow_ssh_from_anywhere": True, "idle": {"minutes": "30", "max_hours": "12"},
    },
    # EFA forced on: every network card in an existing subnet (p5: 32, p4d: 4); idle shutdown's stop
    "efa-on-all-cards": {
        "network": {"vpc_id": VPC, "subnet_id": SUBNET}, "efa": "on",
        "instance_type": "p5.48xlarge", "worker_instance_type": "p4d.24xlarge", "workers": 4,
        "idle": {"max_hours": "8", "action": "stop"},
    },
    # EFA off on EFA types: plain TCP, the top-level subnet and groups
    "efa-off": {"efa": "off", "instance_type": "g6e.48xlarge", "workers": 2},
}


def variant_config(name: str) -> ClusterConfig:
    return build(VARIANTS[name])


def lint(text: str) -> list[str]:
    """cfn-lint's findings on a template, informational checks included; [] when clean."""
    from cfnlint.api import ManualArgs
    from cfnlint.api import lint as cfn_lint

    return [str(m) for m in cfn_lint(text, config=ManualArgs(regions=["us-east-1"], include_checks=["I"]))]
