"""The nested sections of the settings table: `network:` and `efs:` in cluster.yaml (see settings.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cfn_chainermn import names
from cfn_chainermn.config.mount_point import MOUNT_POINT_MAX, mount_point_pattern
from cfn_chainermn.config.setting import EFS, IDLE, NETWORK, Flag, Param, aws_id, cidr_pattern, setting
from cfn_chainermn.errors import ConfigError

_NET_CIDR = cidr_pattern(r"1[6-9]|2[0-8]")  # /16 to /28: what a VPC or subnet may have (range=(16, 28) below)


def efs_flag(value: str) -> dict[str, Any]:
    """`--efs none|new|fs-ID`: the mode, and the id of an existing file system."""
    if value in ("none", "new"):
        return {"efs.mode": value}
    if value.startswith("fs-"):
        return {"efs.mode": "existing", "efs.file_system_id": value}
    raise ConfigError(f"--efs: {value!r} is not none, new, or an EFS id like fs-0123456789abcdef0")


@dataclass(frozen=True)
class NetworkConfig:
    """New VPC and subnet (the CIDRs) unless `subnet_id` names an existing subnet."""

    vpc_id: str = setting("", **aws_id(
        "vpc", flag=Flag("--vpc-id", "Existing VPC (else a new one is made)."),
        param=Param("VpcId", "Existing VPC", NETWORK, "Empty = a new VPC with an internet gateway."),
        doc_default="empty (= new VPC)", doc="`vpc-` followed by 8 or 17 hex digits"))
    subnet_id: str = setting("", **aws_id(
        "subnet", flag=Flag("--subnet-id", "Existing subnet (needs --vpc-id)."),
        param=Param("SubnetId", "Existing subnet", NETWORK,
                    "Empty = a new subnet. An existing one needs its VPC above."),
        doc_default="empty (= new subnet)", doc="`subnet-…`; needs `network.vpc_id`"))
    route_table_id: str = setting("", **aws_id(
        "rtb", flag=Flag("--route-table-id", "Route table for a new subnet in an existing VPC."),
        param=Param("RouteTableId", "Route table for a new subnet", NETWORK, "Needed only for a new subnet in an "
                    "existing VPC: a route table with a route to an internet gateway."),
        doc="`rtb-…`. Required when a new subnet goes into an existing VPC; the route table needs a route to an "
            "internet gateway."))
    vpc_cidr: str = setting(
        "10.0.0.0/16", range=(16, 28), flag=Flag("--vpc-cidr", "CIDR of a new VPC."),
        param=Param("VpcCidr", "New VPC CIDR", NETWORK, "Address range of a new VPC (/16 to /28).", pattern=_NET_CIDR,
                    constraint="an IPv4 CIDR from /16 to /28 such as 10.0.0.0/16"),
        doc="/16 to /28; used only for a new VPC")
    subnet_cidr: str = setting(
        "10.0.0.0/24", range=(16, 28), flag=Flag("--subnet-cidr", "CIDR of a new subnet."),
        param=Param("SubnetCidr", "New subnet CIDR", NETWORK, "Address range of a new subnet, inside the VPC's "
                    "(/16 to /28).", pattern=_NET_CIDR, constraint="an IPv4 CIDR from /16 to /28 such as 10.0.0.0/24"),
        doc="/16 to /28, inside `vpc_cidr`")
    availability_zone: str = setting(
        "", pattern=r"[a-z]{2}(-gov)?-[a-z]+-\d[a-z]", invalid="{value!r} is not an AZ name (for example us-east-1a)",
        flag=Flag("--az", "Availability zone of a new subnet."),
        param=Param("AvailabilityZone", "New subnet AZ", NETWORK, "Availability zone of a new subnet; empty = the "
                    "region's first.", constraint="empty or an AZ name such as us-east-1a"),
        doc_default="empty (= `stack create` picks the first AZ offering every instance type; the template alone "
                    "uses the region's first AZ)",
        doc="an AZ name such as `us-east-1a`. Pick one that has your instance type.")

    @property
    def mode(self) -> str:
        if self.subnet_id:
            return "existing-subnet"
        return "existing-vpc" if self.vpc_id else "new"


@dataclass(frozen=True)
class EfsConfig:
    """The shared file system: none, a new one, or an existing one (mounted on every node)."""

    mode: str = setting(
        "new", choices=("none", "new", "existing"), optional=False, gate=True,
        invalid="{value!r} is not allowed; choose none, new, or existing (or --efs fs-ID)",
        flag=Flag("--efs", "Shared EFS: none, a new one, or an existing file system id.", metavar="none|new|fs-ID",
                  convert=efs_flag),
        param=Param("EfsMode", "Shared EFS", EFS, "none, a new encrypted EFS, or an existing one."),
        doc="`none`, `new`, or `existing`. `--efs fs-…` sets `existing` and the id.")
    file_system_id: str = setting("", **aws_id(
        "fs", doc_flag="`--efs fs-ID`", doc="`fs-…`; required with `existing`",
        param=Param("EfsFileSystemId", "Existing EFS id", EFS, "With EFS existing: its id (it needs a mount target in "
                    "the subnet's AZ).")))
    security_group_id: str = setting("", **aws_id(
        "sg", flag=Flag("--efs-security-group", "Mount-target security group of an existing EFS."),
        param=Param("EfsSecurityGroupId", "Existing EFS security group", EFS, "With EFS existing: the security group "
                    "of its mount targets; NFS from the cluster is added to it."),
        doc="`sg-…`: the security group of the existing EFS's mount targets; required with `existing`"))
    performance_mode: str = setting(
        "generalPurpose", choices=("generalPurpose", "maxIO"), optional=False, invalid="choose one of {choices}",
        flag=Flag("--efs-performance-mode", "Performance mode of a new EFS.", choice=True),
        param=Param("EfsPerformanceMode", "New EFS performance mode", EFS, "generalPurpose suits nearly everyone."),
        doc="`generalPurpose` or `maxIO`")
    throughput_mode: str = setting(
        "elastic", choices=("elastic", "bursting"), optional=False, invalid="choose one of {choices}",
        flag=Flag("--efs-throughput-mode", "Throughput mode of a new EFS.", choice=True),
        param=Param("EfsThroughputMode", "New EFS throughput mode", EFS, "elastic (pay per use) or bursting; maxIO "
                    "needs bursting."),
        doc="`elastic` or `bursting`; `maxIO` needs `bursting`")
    mount_point: str = setting(
        names.DEFAULT_MOUNT_POINT, flag=Flag("--mount-point", "Where the shared file system is mounted."),
        param=Param("MountPoint", "Mount point", EFS, "Where every node mounts the shared file system: a folder of its "
                    "own, not a system folder such as /opt, /var or /etc.", pattern=mount_point_pattern(),
                    max_length=MOUNT_POINT_MAX, constraint="a folder of its own such as /efs or /mnt/efs: not / or a "
                    "top-level system folder (/mnt, /srv, /media, ...), nothing inside /bin, /boot, /dev, /etc, /home, "
                    "/lib*, /opt, /proc, /root, /run, /sbin, /snap, /sys, /tmp, /usr or /var, and no '.', '..' or "
                    "empty parts"),
        doc="a folder of its own such as `/efs` or `/mnt/efs`: parts of letters, digits, `.`, `_` and `-` joined by "
            "single slashes (no `.` or `..` part, no trailing slash, at most 101 characters); not `/` or a top-level "
            "system folder (`/bin`, `/boot`, `/dev`, `/etc`, `/home`, `/lib`, `/lib32`, `/lib64`, `/libx32`, "
            "`/media`, `/mnt`, `/opt`, `/proc`, `/root`, `/run`, `/sbin`, `/snap`, `/srv`, `/sys`, `/tmp`, `/usr`, "
            "`/var`), and nothing inside `/bin`, `/boot`, `/dev`, `/etc`, `/lib*`, `/opt`, `/proc`, `/root`, `/run`, "
            "`/sbin`, `/snap`, `/sys`, `/tmp`, `/usr` or `/var` (root's software's own: the agent hands the mount "
            "point to the cluster user, who could plant what root reads, such as `/var/lib/cfn-chainermn`), nor "
            "`/home` (a user's home, the cluster user's `~/.ssh` or a sudoer's, would be hidden and handed over); "
            "a folder inside `/media`, `/mnt` or `/srv` is fine. `job submit` uploads scripts there.")


IDLE_OFF = "off"
IDLE_ACTIONS = ("delete", "stop")
MAX_HOURS_WITHOUT_YES = 168  # a week: a longer limit asks for --yes (cli/stack_cmd.py)


@dataclass(frozen=True)
class IdleConfig:
    """When the master shuts the cluster down by itself (node/idle.py): after so many idle
    minutes, or so many hours in all; `off` disables either."""

    minutes: str = setting(
        IDLE_OFF, pattern=rf"{IDLE_OFF}|[1-9][0-9]{{0,3}}", optional=False,
        invalid="{value!r} is not allowed; give whole minutes from 1 to 9999, or off",
        flag=Flag("--idle-minutes", "Shut the cluster down after M idle minutes (off = never).", metavar="M|off"),
        param=Param("IdleMinutes", "Idle minutes", IDLE, "The master shuts the cluster down after this many minutes "
                    "with no job, no GPU process and nobody logged in; off = never.",
                    constraint="off, or whole minutes from 1 to 9999"),
        doc="`off`, or whole minutes from 1 to 9999: the master counts the cluster idle while no job of ours is "
            "queued or running, no process holds a GPU and nobody is logged in, and after this many idle minutes "
            "applies `idle.action`. `stack update --idle-minutes off` removes it.")
    max_hours: str = setting(
        IDLE_OFF, pattern=rf"{IDLE_OFF}|[1-9][0-9]{{0,3}}", optional=False,
        invalid="{value!r} is not allowed; give whole hours from 1 to 9999, or off",
        flag=Flag("--max-hours", f"Shut the cluster down H hours after it was created (off = never; over "
                  f"{MAX_HOURS_WITHOUT_YES} needs --yes).", metavar="H|off"),
        param=Param("MaxHours", "Maximum hours", IDLE, "The master shuts the cluster down this many hours after the "
                    "stack was created, busy or not; off = never.", constraint="off, or whole hours from 1 to 9999"),
        doc=f"`off`, or whole hours from 1 to 9999 after the stack's creation, busy or not; more than "
            f"{MAX_HOURS_WITHOUT_YES} (a week) needs `--yes` on the command line")
    action: str = setting(
        "delete", choices=IDLE_ACTIONS, optional=False, invalid="{value!r} is not allowed; choose one of {choices}",
        flag=Flag("--idle-action", "What the master does at the limit: delete the stack, or stop the nodes "
                  "(EFS kept).", choice=True),
        param=Param("IdleAction", "Idle action", IDLE, "delete = workers to 0, then the whole stack (its bucket "
                    "emptied); stop = workers to 0 and the master stopped, EFS kept."),
        doc="`delete` (the worker group goes to 0, then the stack deletes itself through a CloudFormation service "
            "role and the master empties the key bucket) or `stop` (the worker group goes to 0 and the master "
            "stops; EFS and the stack stay)")

    @property
    def enabled(self) -> bool:
        """A limit is set (the template's HasIdleLimit)."""
        return self.minutes != IDLE_OFF or self.max_hours != IDLE_OFF


def has_idle_limit(parameters: Mapping[str, str]) -> bool:
    """Whether a stack's parameters set an idle or TTL limit (a stack from before them sets neither)."""
    return any(parameters.get(k, IDLE_OFF) != IDLE_OFF for k in ("IdleMinutes", "MaxHours"))
