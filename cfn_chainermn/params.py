"""The template's parameters, as values derived from a ClusterConfig.

One mapping serves both ends: `cfn-chainermn template --config` writes these values as the
parameters' defaults, and `stack create` passes them as the stack's parameters, so the console
and the CLI can never disagree about what a setting means.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the bucket layout below is read by light paths (job submit)
    from cfn_chainermn.config import ClusterConfig

# Logical ids that the node agent signals and the CLI reports on.
MASTER_RESOURCE = "ClusterMaster"
WORKER_GROUP_RESOURCE = "WorkerGroup"

# Tags the template puts on every instance; discovery and `stack list` key on them.
CLUSTER_TAG = "cfn-chainermn:cluster"
ROLE_TAG = "cfn-chainermn:role"


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

# Stack outputs (ClusterMasterPublicDNS keeps the 2018 reference's name).
OUT_MASTER_DNS = "ClusterMasterPublicDNS"
OUT_MASTER_PRIVATE_IP = "ClusterMasterPrivateIP"
OUT_MASTER_INSTANCE_ID = "ClusterMasterInstanceId"
OUT_BUCKET = "KeyBucketName"
OUT_EFS_ID = "EfsFileSystemId"
OUT_WORKER_GROUP = "WorkerGroupName"
OUT_MOUNT_POINT = "MountPoint"
OUT_SSH_COMMAND = "SshCommand"

# Layout of the key bucket, shared by the node agent (writer) and the CLI (reader).
KEY_PREFIX = "cluster-key/"  # id_ed25519, id_ed25519.pub: written by the master only
# The master's sshd host key, published by the master under the prefix only it may write: the
# CLI pins the master from this object, never from nodes/ (which every node can write).
MASTER_HOST_KEY = KEY_PREFIX + "master_host_ed25519.pub"
NODES_PREFIX = "nodes/"  # nodes/<instance-id>/host_ed25519.pub and nodes/<instance-id>/ready
LOGS_PREFIX = "logs/"  # logs/<instance-id>/agent.log

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
    from cfn_chainermn.validation import MIN_SSH_PREFIX, _network

    net = _network(cidr)
    return net is not None and net.prefixlen < MIN_SSH_PREFIX
