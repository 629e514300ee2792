"""Options shared by commands: the cluster flags that mirror cluster.yaml (AWS access: aws_flags.py).

A flag given on the command line overrides the same field of `--config`; flags not given
leave the file (or the default) alone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from cfn_chainermn.config.model import EFS_PERFORMANCE_MODES, EFS_THROUGHPUT_MODES, ClusterConfig, load
from cfn_chainermn.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])

# (flag, config path, click kwargs)
_CLUSTER_FLAGS: list[tuple[str, str, dict[str, Any]]] = [
    ("--region", "region", {"help": "AWS region (else AWS_REGION / the profile's region)."}),
    ("--instance-type", "instance_type", {"help": "Master instance type (and workers' unless set)."}),
    ("--worker-instance-type", "worker_instance_type", {"help": "Workers' instance type."}),
    ("--workers", "workers", {"type": int, "help": "Number of workers (0 = master only)."}),
    ("--key-name", "key_name", {"help": "EC2 key pair for logging in."}),
    ("--ssh-cidr", "ssh_cidr", {"help": "Address range allowed to SSH in, e.g. 203.0.113.7/32."}),
    ("--vpc-id", "network.vpc_id", {"help": "Existing VPC (else a new one is made)."}),
    ("--subnet-id", "network.subnet_id", {"help": "Existing subnet (needs --vpc-id)."}),
    ("--route-table-id", "network.route_table_id", {"help": "Route table for a new subnet in an existing VPC."}),
    ("--vpc-cidr", "network.vpc_cidr", {"help": "CIDR of a new VPC (default 10.0.0.0/16)."}),
    ("--subnet-cidr", "network.subnet_cidr", {"help": "CIDR of a new subnet (default 10.0.0.0/24)."}),
    ("--az", "network.availability_zone", {"help": "Availability zone of a new subnet."}),
    ("--efs-security-group", "efs.security_group_id", {"help": "Mount-target security group of an existing EFS."}),
    ("--efs-performance-mode", "efs.performance_mode",
     {"type": click.Choice(EFS_PERFORMANCE_MODES), "help": "Performance mode of a new EFS."}),
    ("--efs-throughput-mode", "efs.throughput_mode",
     {"type": click.Choice(EFS_THROUGHPUT_MODES), "help": "Throughput mode of a new EFS."}),
    ("--mount-point", "efs.mount_point", {"help": "Where the shared file system is mounted (default /efs)."}),
    ("--ami", "ami", {"help": "AMI id (default: the Deep Learning Base AMI from SSM)."}),
    ("--ami-ssm-parameter", "ami_ssm_parameter", {"help": "SSM parameter that names the AMI."}),
    ("--root-volume-size", "root_volume_size", {"type": int, "help": "Root volume size in GiB."}),
    ("--tenancy", "tenancy", {"type": click.Choice(["default", "dedicated"]), "help": "Instance tenancy."}),
    ("--agent-package", "agent_package", {"help": "pip requirement of the node agent on stock AMIs."}),
    ("--agent-index-url", "agent_index_url", {"help": "Package index the nodes install the agent from."}),
]


def _dest(flag: str) -> str:
    return "opt_" + flag.lstrip("-").replace("-", "_")


def cluster_options(func: F) -> F:
    """Add `--config` and every cluster flag; the command receives them in `**kwargs`."""
    decorators: list[Callable[[F], F]] = [
        click.option("--config", "opt_config", type=click.Path(dir_okay=False),
                     help="cluster.yaml to read settings from (flags override it)."),
    ]
    for flag, _path, kwargs in _CLUSTER_FLAGS:
        decorators.append(click.option(flag, _dest(flag), default=None, **kwargs))
    decorators += [
        click.option("--efs", "opt_efs", default=None, metavar="none|new|fs-ID",
                     help="Shared EFS: none, a new one, or an existing file system id."),
        click.option("--spot-workers/--on-demand-workers", "opt_spot_workers", default=None,
                     help="Run workers on Spot capacity."),
        click.option("--allow-ssh-from-anywhere", "opt_allow_ssh_from_anywhere", is_flag=True,
                     default=None, help="Permit --ssh-cidr 0.0.0.0/0."),
        click.option("--tag", "opt_tag", multiple=True, metavar="KEY=VALUE",
                     help="Tag for the stack and its resources (repeatable)."),
    ]
    for deco in reversed(decorators):
        func = deco(func)
    return func


def cluster_overrides(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Dotted config paths for the flags that were given; pops them from `kwargs`."""
    out: dict[str, Any] = {}
    for flag, path, _ in _CLUSTER_FLAGS:
        value = kwargs.pop(_dest(flag), None)
        if value is not None:
            out[path] = value
    efs = kwargs.pop("opt_efs", None)
    if efs is not None:
        if efs in ("none", "new"):
            out["efs.mode"] = efs
        elif efs.startswith("fs-"):
            out["efs.mode"] = "existing"
            out["efs.file_system_id"] = efs
        else:
            raise ConfigError(f"--efs: {efs!r} is not none, new, or an EFS id like fs-0123456789abcdef0")
    spot = kwargs.pop("opt_spot_workers", None)
    if spot is not None:
        out["spot_workers"] = spot
    anywhere = kwargs.pop("opt_allow_ssh_from_anywhere", None)
    if anywhere:
        out["allow_ssh_from_anywhere"] = True
    tags = kwargs.pop("opt_tag", ()) or ()
    if tags:
        parsed: dict[str, str] = {}
        for item in tags:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--tag: {item!r} is not KEY=VALUE")
            parsed[key] = value
        out["tags"] = parsed
    return out


def config_from_options(kwargs: dict[str, Any], *, name: str | None = None, for_stack: bool = False,
                        base: Mapping[str, Any] | None = None) -> ClusterConfig:
    """The validated config for a command: `base`, then the --config file, then flags, then NAME."""
    path = kwargs.pop("opt_config", None)
    overrides = cluster_overrides(kwargs)
    if name is not None:
        overrides["name"] = name
    return load(path, overrides, for_stack=for_stack, base=base)
