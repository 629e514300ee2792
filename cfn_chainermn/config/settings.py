"""Every cluster setting, declared once: its field, type, default, flag, template parameter,
console label and group, allowed values, and reference text (vocabulary: setting.py).

Field order is cluster.yaml's and the order validation reports problems in; the console shows
the parameters by group (setting.GROUPS), each group in field order. Rules that are more than
a constraint on one value (between fields, the SSH /8 rule, the mount point) are functions in
validation.py, keyed to these fields. `python -m cfn_chainermn.config.reference` writes the
reference, docs/configuration.md, from this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cfn_chainermn.catalog.instance_types import DEFAULT_INSTANCE_TYPE, INSTANCE_TYPES
from cfn_chainermn.config.sections import EfsConfig, IdleConfig, NetworkConfig
from cfn_chainermn.config.setting import (
    ACCESS,
    AGENT,
    CLUSTER,
    IMAGE,
    NO_SHELL,
    Entry,
    Flag,
    Param,
    aws_id,
    cidr_pattern,
    entries,
    setting,
    setting_factory,
)
from cfn_chainermn.errors import ConfigError
from cfn_chainermn.names import STACK_NAME_PATTERN, STACK_NAME_RULE

__all__ = [
    "AGENT_INDEX_URL_MAX", "AGENT_PACKAGE_MAX", "AGENT_PIN", "AGENT_SOURCES", "DEFAULT_AMI_SSM_PARAMETER",
    "EFS_MODES", "EFS_PERFORMANCE_MODES", "EFS_THROUGHPUT_MODES", "MAX_ROOT_VOLUME_GIB",
    "MAX_SPOT_TYPES", "MAX_WORKERS", "TEMPLATE_ONLY", "TENANCIES",
    "ClusterConfig", "EfsConfig", "IdleConfig", "NetworkConfig", "find", "settings",
]


def tag_flag(items: tuple[str, ...]) -> dict[str, Any]:
    """`--tag KEY=VALUE`, repeated: added to the file's tags."""
    parsed: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--tag: {item!r} is not KEY=VALUE")
        parsed[key] = value
    return {"tags": parsed}


MAX_SPOT_TYPES = 4  # more Spot worker types: the template has one MixedInstancesPolicy override for each
_TYPE = r"[a-z][a-z0-9-]*\.[a-z0-9]+"  # an instance type's shape; the catalogue's names are checked in validation

AGENT_SOURCES = ("template", "ami", "index")
# A pinned agent requirement: the only way a node installs this project from an index.
AGENT_PIN = r"cfn-chainermn==[0-9][0-9A-Za-z.+!-]* --hash=sha256:[0-9a-f]{64}"
# Both land in UserData, which EC2 caps at 16 KB (tests/template/test_template_userdata.py).
AGENT_PACKAGE_MAX, AGENT_INDEX_URL_MAX = 120, 200


def _instance_type(flag: Flag, param: Param, doc: str, **kwargs: Any) -> str:
    default: str = kwargs.pop("default", "")
    return setting(default, choices=tuple(INSTANCE_TYPES), flag=flag, param=param, doc=doc,
                   invalid="unknown instance type {value!r}; choose one of {choices}", **kwargs)


@dataclass(frozen=True)
class ClusterConfig:
    """A cluster's settings: cluster.yaml, then flags, validated once (model.build)."""

    name: str = setting(
        "chainermn", pattern=STACK_NAME_PATTERN, optional=False,
        invalid="{value!r} is not a CloudFormation stack name; " + STACK_NAME_RULE,
        doc_flag="the `NAME` argument of `stack` commands",
        doc="stack name: 1–128 letters, digits and hyphens, starting with a letter. No resource name is derived from "
            "it, so case and length never break anything.")
    region: str = setting(
        "", pattern=r"[a-z]{2}(-gov)?-[a-z]+-\d", invalid="{value!r} is not an AWS region name (for example us-east-1)",
        flag=Flag("--region", "AWS region (else AWS_REGION / the profile's region)."),
        doc_default="`AWS_REGION` or the profile's region", doc="a region name such as `us-east-1`")
    instance_type: str = _instance_type(
        Flag("--instance-type", "Master instance type (and workers' unless set)."),
        Param("MasterInstanceType", "Master instance type", CLUSTER, "GPU instance type of the master node."),
        "one of the supported GPU types (p3, p3dn, p4d, p4de, p5, p5e, p5en, p6-b200, p6-b300, g4dn, g5, g6, gr6, g6e, "
        "g7, g7e sizes; "
        "[GPUs, images and EFA](gpus.md)). It sets the master type, and the "
        "workers' type too unless `worker_instance_type` is set.", default=DEFAULT_INSTANCE_TYPE)
    worker_instance_type: str = _instance_type(
        Flag("--worker-instance-type", "Workers' instance type."),
        Param("WorkerInstanceType", "Worker instance type", CLUSTER, "GPU instance type of every worker node.",
              source="worker_type"),
        "same list", doc_default="empty (= `instance_type`)")
    workers: int = setting(
        1, range=(0, 256), invalid="{value} is out of range; give {min} to {max} (0 = master only)",
        flag=Flag("--workers", "Number of workers (0 = master only)."),
        param=Param("WorkerCount", "Workers", CLUSTER, "Number of workers besides the master (0 = master only). "
                    "Update it to scale."),
        doc="0–256; 0 means a master-only cluster")
    key_name: str = setting(
        "", pattern=r"[\x20-\x7e]{1,255}",
        invalid="must be 1-255 printable ASCII characters, the name of an EC2 key pair",
        flag=Flag("--key-name", "EC2 key pair for logging in."),
        param=Param("KeyName", "EC2 key pair", ACCESS, "Key pair you log in with (ssh -i KEY.pem chainer@master).",
                    type="AWS::EC2::KeyPair::KeyName", ask=True),
        doc_default="none",
        doc="an EC2 key pair in the region (1–255 printable ASCII characters). `stack create` requires it. Without "
            "it, the template's console asks for it.")
    ssh_cidr: str = setting(
        "", range=(0, 32), flag=Flag("--ssh-cidr", "Address range allowed to SSH in, e.g. 203.0.113.7/32."),
        param=Param("SshCidr", "SSH from (CIDR)", ACCESS, "Who may SSH to the master, e.g. 203.0.113.7/32. 0.0.0.0/0 "
                    "(everyone) also needs AllowSshFromAnywhere.", pattern=cidr_pattern(r"3[0-2]|[12]?\d"),
                    constraint="an IPv4 CIDR such as 203.0.113.7/32 (octets 0-255, prefix /0 to /32)", ask=True),
        doc_default="none",
        doc="an IPv4 CIDR with its host bits zero, written plainly (`/32`, not `/032`). `stack create` requires it. A "
            "range wider than `/8` (`0.0.0.0/0`, `0.0.0.0/1`, `128.0.0.0/1`, …) is refused unless you also give "
            "`allow_ssh_from_anywhere`.")
    allow_ssh_from_anywhere: bool = setting(
        False, flag=Flag("--allow-ssh-from-anywhere", "Permit --ssh-cidr 0.0.0.0/0."),
        param=Param("AllowSshFromAnywhere", "Allow SSH from anywhere", ACCESS, "true lets SshCidr be 0.0.0.0/0, open "
                    "to the whole internet; leave false and give your own range."),
        doc="permits an `ssh_cidr` wider than `/8`, up to `0.0.0.0/0`")
    network: NetworkConfig = field(default_factory=NetworkConfig, metadata={"section": NetworkConfig})
    efs: EfsConfig = field(default_factory=EfsConfig, metadata={"section": EfsConfig})
    ami: str = setting("", **aws_id(
        "ami", flag=Flag("--ami", "AMI id (default: the Deep Learning Base AMI from SSM)."),
        param=Param("ImageId", "AMI id", IMAGE, "AMI for every node, e.g. from `cfn-chainermn ami build`; empty = the "
                    "SSM parameter below."),
        doc="`ami-` followed by 8 or 17 hex digits, e.g. from `cfn-chainermn ami build`. Empty means "
            "`ami_ssm_parameter` is used."))
    # The AWS Deep Learning Base AMI (Ubuntu 22.04, NVIDIA driver) as AWS publishes it in SSM.
    ami_ssm_parameter: str = setting(
        "/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id",
        flag=Flag("--ami-ssm-parameter", "SSM parameter that names the AMI (default: the Deep Learning "
                                           "Base AMI, Ubuntu 22.04)."),
        param=Param("ImageSsmParameter", "AMI SSM parameter", IMAGE, "SSM parameter naming the AMI when AMI id is "
                    "empty.", type="AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>"),
        doc="an SSM parameter path starting with `/`. The stack resolves it at creation, so you always get the current "
            "Deep Learning Base AMI.")
    root_volume_size: int = setting(
        100, range=(8, 16384), invalid="{value} GiB is out of range; give {min} to {max}",
        flag=Flag("--root-volume-size", "Root volume size in GiB."),
        param=Param("RootVolumeSize", "Root volume (GiB)", IMAGE, "Encrypted gp3 root volume of each node."),
        doc="8–16384 GiB (encrypted gp3)")
    tenancy: str = setting(
        "default", choices=("default", "dedicated"), optional=False,
        invalid="{value!r} is not allowed; choose one of {choices}",
        flag=Flag("--tenancy", "Instance tenancy.", choice=True),
        param=Param("Tenancy", "Tenancy", IMAGE, "Instance tenancy of every node."),
        doc="`default` or `dedicated`, for the master and the workers")
    spot_workers: bool = setting(
        False, flag=Flag("--spot-workers/--on-demand-workers", "Run workers on Spot capacity."),
        param=Param("SpotWorkers", "Spot workers", CLUSTER, "Run workers on Spot capacity (the master stays "
                    "On-Demand)."),
        doc="workers on Spot capacity; the master stays On-Demand")
    spot_instance_types: str = setting(
        "", pattern=rf"{_TYPE}(,{_TYPE}){{0,{MAX_SPOT_TYPES - 1}}}",
        invalid=f"{{value!r}} is not up to {MAX_SPOT_TYPES} instance types joined by commas (for example "
                "g6.12xlarge,g5.12xlarge)",
        flag=Flag("--spot-instance-types", "With --spot-workers: more worker types of the same GPU count, "
                  "comma-separated.", metavar="TYPE,TYPE"),
        param=Param("SpotInstanceTypes", "More Spot worker types", CLUSTER, f"With Spot workers: up to "
                    f"{MAX_SPOT_TYPES} more types with the worker type's GPU count, comma-separated; Auto Scaling "
                    "launches from whichever pool has capacity.",
                    constraint=f"empty, or up to {MAX_SPOT_TYPES} instance types joined by commas such as "
                               "g6.12xlarge,g5.12xlarge"),
        doc_default="empty (= the worker type only)",
        doc=f"with `spot_workers`: up to {MAX_SPOT_TYPES} more worker types, comma-separated, each with the worker "
            "type's GPU count (and its EFA cards when EFA is on); the worker group then launches from whichever "
            "Spot pool has capacity (a MixedInstancesPolicy) and replaces a worker at risk early (capacity "
            "rebalancing). See [stacks](stacks.md#spot-workers).")
    efa: str = setting(
        "auto", choices=("auto", "on", "off"), optional=False,
        invalid="{value!r} is not allowed; choose one of {choices}",
        flag=Flag("--efa", "EFA interfaces on the nodes' network cards: auto, on or off.", choice=True),
        param=Param("Efa", "EFA", CLUSTER, "auto = an EFA interface on every network card of types that have EFA; "
                    "on = the same, refused for types without EFA; off = TCP only."),
        doc="`auto` (EFA on every network card of the types that have it, TCP elsewhere), `on` (the same, but a "
            "type without EFA is refused) or `off`. With more than one card (p4d, p5, ...), EFA goes on every card "
            "only in an existing subnet (AWS gives no public address to an instance with several interfaces), "
            "else on card 0 alone. See the template reference.")
    idle: IdleConfig = field(default_factory=IdleConfig, metadata={"section": IdleConfig})
    tags: Mapping[str, str] = setting_factory(
        dict, flag=Flag("--tag", "Tag for the stack and its resources (repeatable).", metavar="KEY=VALUE",
                        multiple=True, convert=tag_flag),
        doc_flag="`--tag KEY=VALUE` (repeatable; adds to the file's tags)", doc_default="none",
        doc="at most 40. Keys have 1–128 characters (letters, digits, spaces and `_ . : / = + - @`) and must not start "
            "with `aws:`; values have at most 256. `stack create` puts them on the stack, and CloudFormation copies "
            "them to its resources.")
    agent_source: str = setting(
        "template", choices=AGENT_SOURCES, optional=False,
        invalid="{value!r} is not allowed; choose one of {choices}",
        flag=Flag("--agent-source", "Where nodes get the agent: the template itself, the AMI, or a package index "
                  "(AgentPackage, pinned by hash).", choice=True),
        param=Param("AgentSource", "Agent source", AGENT, "template: the agent travels inside this template; ami: "
                    "the image has it baked (cfn-chainermn ami build); index: AgentPackage, pinned by hash."),
        doc="`template` (the agent wheel travels inside the template and nodes read it back with GetTemplate), "
            "`ami` (baked into the image by `ami build`; a node without it fails at once) or `index` "
            "(`agent_package` from `agent_index_url`, pinned by hash)")
    agent_package: str = setting(
        "",
        flag=Flag("--agent-package", "With --agent-source index: cfn-chainermn==VERSION --hash=sha256:HEX."),
        param=Param("AgentPackage", "Agent package", AGENT, "With AgentSource index: the agent's pinned requirement, "
                    "cfn-chainermn==VERSION --hash=sha256:HEX.", pattern=rf"^({AGENT_PIN})?$",
                    max_length=AGENT_PACKAGE_MAX,
                    constraint="empty, or cfn-chainermn==VERSION --hash=sha256:<64 hex digits>"),
        doc_default="empty", depends_on="agent_source",
        doc="with `agent_source: index`, the agent's requirement pinned by hash, "
            "`cfn-chainermn==VERSION --hash=sha256:<64 hex digits>`: a node never installs this project by name "
            "unless its hash is pinned")
    agent_index_url: str = setting(
        "", flag=Flag("--agent-index-url", "Package index for the agent's pinned dependencies (and AgentPackage)."),
        param=Param("AgentIndexUrl", "Agent package index", AGENT, "https package index for the agent's hash-pinned "
                    "dependencies (and AgentPackage); empty = PyPI.",
                    pattern=rf"^(https://{NO_SHELL}+)?$", max_length=AGENT_INDEX_URL_MAX,
                    constraint="empty or an https:// URL of at most 200 characters, with no credentials in it"),
        doc_default="empty (= PyPI)", doc="an `https://` package index (a mirror) for the agent's hash-pinned "
                                          "dependencies, and for `agent_package`; at most 200 characters, and no "
                                          "credentials (it is in every node's user data)")
    # Client side only: the key `job`, `ssh`, `hostfile`, `cluster check` log in with.
    identity_file: str = setting(
        "", doc_flag="`-i`/`--identity-file` of `job`, `ssh`, `cluster check` (or `CFN_CHAINERMN_IDENTITY_FILE`)",
        doc_default="none",
        doc="the private key of `key_name`, e.g. `~/.ssh/my-key.pem`; read only by the commands that log in, so a "
            "file missing on this machine fails those, not `template` or `stack`")

    @property
    def worker_type(self) -> str:
        """The workers' instance type: the master's unless set."""
        return self.worker_instance_type or self.instance_type

    @property
    def instance_types(self) -> tuple[str, ...]:
        """The instance types the cluster may run, each once: the master's first, then the workers' when there are
        any, with the more Spot types (so every check of a type, the zone offering them all too, sees those)."""
        workers = [self.worker_type, *self.spot_types] if self.workers else []
        return tuple(dict.fromkeys([self.instance_type, *workers]))

    def setting_of_type(self, name: str) -> str:
        """Which setting brought instance type `name` into `instance_types`, for the field an error names."""
        if name == self.instance_type:
            return "instance_type"
        return "worker_instance_type" if name == self.worker_type else "spot_instance_types"

    @property
    def spot_types(self) -> tuple[str, ...]:
        """The more Spot worker types, as a list (the setting is comma-separated, as the parameter)."""
        return tuple(t for t in self.spot_instance_types.split(",") if t)


# Parameters no setting has (none since the agent travels inside the template).
TEMPLATE_ONLY: tuple[Param, ...] = ()


def settings() -> tuple[Entry, ...]:
    """Every setting of ClusterConfig in field order (cluster.yaml's)."""
    return _ENTRIES


def find(path: str) -> Entry:
    """The setting at a dotted path; KeyError names a path the table lacks."""
    return _BY_PATH[path]


_ENTRIES = tuple(entries(ClusterConfig))
_BY_PATH = {e.path: e for e in _ENTRIES}


def _limit(path: str) -> int:
    bounds = find(path).setting.range
    assert bounds is not None
    return bounds[1]


# The table's values under the names the rest of the package (and its tests) use.
DEFAULT_AMI_SSM_PARAMETER: str = find("ami_ssm_parameter").default
MAX_WORKERS, MAX_ROOT_VOLUME_GIB = _limit("workers"), _limit("root_volume_size")
TENANCIES, EFS_MODES = find("tenancy").setting.choices, find("efs.mode").setting.choices
EFS_PERFORMANCE_MODES = find("efs.performance_mode").setting.choices
EFS_THROUGHPUT_MODES = find("efs.throughput_mode").setting.choices
