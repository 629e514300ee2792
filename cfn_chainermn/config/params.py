"""The template's parameters, as values derived from a ClusterConfig.

One mapping serves both ends: `cfn-chainermn template --config` writes these values as the
parameters' defaults, and `stack create` passes them as the stack's parameters, so the console
and the CLI can never disagree about what a setting means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: no import cycle with the config model
    from cfn_chainermn.config.model import ClusterConfig

def template_parameters(cfg: ClusterConfig) -> dict[str, str]:
    """Every template parameter as CloudFormation wants it: strings, "" for "not set"."""
    n, e = cfg.network, cfg.efs
    return {
        "KeyName": cfg.key_name,
        "SshCidr": cfg.ssh_cidr,
        "AllowSshFromAnywhere": "true" if cfg.allow_ssh_from_anywhere else "false",
        "MasterInstanceType": cfg.instance_type,
        "WorkerInstanceType": cfg.worker_type,
        "WorkerCount": str(cfg.workers),
        "SpotWorkers": "true" if cfg.spot_workers else "false",
        "ImageId": cfg.ami,
        "ImageSsmParameter": cfg.ami_ssm_parameter,
        "RootVolumeSize": str(cfg.root_volume_size),
        "Tenancy": cfg.tenancy,
        "VpcId": n.vpc_id,
        "SubnetId": n.subnet_id,
        "RouteTableId": n.route_table_id,
        "VpcCidr": n.vpc_cidr,
        "SubnetCidr": n.subnet_cidr,
        "AvailabilityZone": n.availability_zone,
        "EfsMode": e.mode,
        "EfsFileSystemId": e.file_system_id,
        "EfsSecurityGroupId": e.security_group_id,
        "EfsPerformanceMode": e.performance_mode,
        "EfsThroughputMode": e.throughput_mode,
        "MountPoint": e.mount_point,
        "AgentPackage": cfg.agent_package,
        "AgentIndexUrl": cfg.agent_index_url,
        "AgentWheelS3Path": "",
    }

# Parameter -> cluster.yaml field, for reading a stack's settings back (`stack update`).
_FIELDS: dict[str, str] = {
    "KeyName": "key_name", "SshCidr": "ssh_cidr", "AllowSshFromAnywhere": "allow_ssh_from_anywhere",
    "MasterInstanceType": "instance_type",
    "WorkerInstanceType": "worker_instance_type", "WorkerCount": "workers", "SpotWorkers": "spot_workers",
    "ImageId": "ami", "ImageSsmParameter": "ami_ssm_parameter", "RootVolumeSize": "root_volume_size",
    "Tenancy": "tenancy", "VpcId": "network.vpc_id", "SubnetId": "network.subnet_id",
    "RouteTableId": "network.route_table_id", "VpcCidr": "network.vpc_cidr", "SubnetCidr": "network.subnet_cidr",
    "AvailabilityZone": "network.availability_zone", "EfsMode": "efs.mode", "EfsFileSystemId": "efs.file_system_id",
    "EfsSecurityGroupId": "efs.security_group_id", "EfsPerformanceMode": "efs.performance_mode",
    "EfsThroughputMode": "efs.throughput_mode", "MountPoint": "efs.mount_point",
    "AgentPackage": "agent_package", "AgentIndexUrl": "agent_index_url",
}


def config_overrides(parameters: Mapping[str, str]) -> dict[str, object]:
    """A stack's current parameters as dotted config fields: the base that `stack update` edits.

    The inverse of template_parameters, so an update that names one flag changes one thing.
    A stack made before AllowSshFromAnywhere existed keeps the range it has: it was allowed then.
    """
    out: dict[str, object] = {}
    for key, value in parameters.items():
        path = _FIELDS.get(key)
        if path is not None:
            out[path] = value
    if "AllowSshFromAnywhere" not in parameters and _wider_than_opt_in(str(out.get("ssh_cidr", ""))):
        out["allow_ssh_from_anywhere"] = True
    return out


def _wider_than_opt_in(cidr: str) -> bool:
    from cfn_chainermn.config.validation import MIN_SSH_PREFIX, _network

    net = _network(cidr)
    return net is not None and net.prefixlen < MIN_SSH_PREFIX
