"""Validation of a ClusterConfig: one line per problem, naming the field and the fix.

`validate` walks the settings table in field order: each setting's own constraint (choices,
range, pattern: declared in the table), then the rules below keyed to it. A rule keyed to a
section ("network") runs after that section's fields. `config.build` runs them all before
anything else happens, so bad input never reaches AWS.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from cfn_chainermn.config.mount_point import mount_point_pattern, mount_point_problem
from cfn_chainermn.config.settings import AGENT_INDEX_URL_MAX, AGENT_PACKAGE_MAX, AGENT_PIN, find, settings

if TYPE_CHECKING:
    from cfn_chainermn.config.settings import ClusterConfig

__all__ = ["MIN_SSH_PREFIX", "mount_point_pattern", "mount_point_problem", "validate"]

Rule = Callable[["ClusterConfig", bool], Iterable[str]]  # (config, for_stack) -> problems
RULES: dict[str, list[Rule]] = {}

TAG_KEY_RE = re.compile(r"^[\w .:/=+\-@]{1,128}$")
SSM_PARAM_RE = re.compile(r"^/[\w.\-/]{1,1000}$")
# SSH from a range wider than a /8 (16.7 million addresses) needs allow_ssh_from_anywhere.
MIN_SSH_PREFIX = 8


def rule(key: str) -> Callable[[Rule], Rule]:
    """Register a rule after the setting (or section) `key`; an unknown key fails at import."""
    if not any(e.path == key or e.section == key for e in settings()):
        raise KeyError(f"validation rule for {key!r}: no such setting or section")

    def register(fn: Rule) -> Rule:
        RULES.setdefault(key, []).append(fn)
        return fn

    return register


def validate(cfg: ClusterConfig, *, for_stack: bool = False) -> list[str]:
    """Every problem with `cfg`, one line each: the field, what is wrong, and the fix."""
    p: list[str] = []
    skip = None  # a section whose gate field is invalid: its other checks would only add noise
    entries = settings()
    for i, e in enumerate(entries):
        if e.section and e.section == skip:
            continue
        problem = e.setting.problem(e.path, e.value(cfg))
        if problem:
            p.append(problem)
            skip = e.section if e.setting.gate else None
            if skip:
                continue
        for check in RULES.get(e.path, ()):
            p.extend(check(cfg, for_stack))
        last_of_section = i + 1 == len(entries) or entries[i + 1].section != e.section
        if e.section and last_of_section:
            for check in RULES.get(e.section, ()):
                p.extend(check(cfg, for_stack))
    return p


def _network(value: str) -> ipaddress.IPv4Network | None:
    try:
        return ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        return None


def _check_cidr(path: str, value: str, problems: list[str], *, min_prefix: int, max_prefix: int) -> None:
    net = _network(value)
    if net is None:
        problems.append(
            f"{path}: {value!r} is not an IPv4 network in CIDR form with its host bits zero "
            "(for example 10.0.0.0/16)"
        )
    elif str(net) != value:  # e.g. /032: Python reads it, the template's pattern (and AWS) do not
        problems.append(f"{path}: write {value!r} as {net}")
    elif not min_prefix <= net.prefixlen <= max_prefix:
        problems.append(f"{path}: prefix /{net.prefixlen} is outside /{min_prefix}../{max_prefix}; AWS refuses it")


def _cidr_problems(path: str, value: str) -> list[str]:
    """`value` checked as the CIDR at `path`, within the prefixes the table gives it."""
    bounds = find(path).setting.range
    assert bounds is not None, path
    problems: list[str] = []
    _check_cidr(path, value, problems, min_prefix=bounds[0], max_prefix=bounds[1])
    return problems


@rule("key_name")
def _key_name_required(cfg: ClusterConfig, for_stack: bool) -> list[str]:
    if for_stack and not cfg.key_name:
        return ["key_name: required; give --key-name with the name of an EC2 key pair in the region"]
    return []


@rule("ssh_cidr")
def _ssh_cidr(cfg: ClusterConfig, for_stack: bool) -> list[str]:
    if not cfg.ssh_cidr:
        return (["ssh_cidr: required; give --ssh-cidr with the address you connect from (for example 203.0.113.7/32)"]
                if for_stack else [])
    p = _cidr_problems("ssh_cidr", cfg.ssh_cidr)
    net = _network(cfg.ssh_cidr)
    if net is not None and net.prefixlen < MIN_SSH_PREFIX and not cfg.allow_ssh_from_anywhere:
        reach = "the whole internet" if net.prefixlen == 0 else "a large part of the internet"
        p.append(
            f"ssh_cidr: {net} opens SSH to {reach}; give your own address range (for example "
            "203.0.113.7/32) or set allow_ssh_from_anywhere: true (--allow-ssh-from-anywhere)"
        )
    return p


@rule("network")
def _network_layout(cfg: ClusterConfig, for_stack: bool) -> list[str]:
    """Which ids go together, and the CIDRs of what gets created (an existing subnet has its own)."""
    n, p = cfg.network, []
    if n.subnet_id and not n.vpc_id:
        p.append("network.vpc_id: required with an existing subnet; give --vpc-id of the subnet's VPC")
    if n.vpc_id and not n.subnet_id and not n.route_table_id:
        p.append(
            "network.route_table_id: required when a new subnet goes into an existing VPC; "
            "give the id of a route table with a route to an internet gateway"
        )
    if n.subnet_id:
        return p
    p += _cidr_problems("network.subnet_cidr", n.subnet_cidr)
    if not n.vpc_id:
        p += _cidr_problems("network.vpc_cidr", n.vpc_cidr)
        vpc, subnet = _network(n.vpc_cidr), _network(n.subnet_cidr)
        if vpc is not None and subnet is not None and not subnet.subnet_of(vpc):
            p.append(
                f"network.subnet_cidr: {n.subnet_cidr} is outside network.vpc_cidr {n.vpc_cidr}; "
                "pick a subnet inside the VPC's range"
            )
    return p


@rule("efs.mode")
def _existing_efs(cfg: ClusterConfig, for_stack: bool) -> list[str]:
    e, p = cfg.efs, []
    if e.mode == "existing":
        if not e.file_system_id:
            p.append("efs.file_system_id: required with efs.mode existing; give --efs fs-ID")
        if not e.security_group_id:
            p.append(
                "efs.security_group_id: required with an existing EFS; give --efs-security-group "
                "with the security group of its mount targets"
            )
    return p


@rule("efs.throughput_mode")
def _max_io_needs_bursting(cfg: ClusterConfig, for_stack: bool) -> list[str]:
    if cfg.efs.performance_mode == "maxIO" and cfg.efs.throughput_mode == "elastic":
        return ["efs.throughput_mode: elastic does not work with maxIO; use bursting or generalPurpose"]
    return []


@rule("efs.mount_point")
def _mount_point(cfg: ClusterConfig, for_stack: bool) -> list[str]:
    problem = mount_point_problem(cfg.efs.mount_point)
    return [f"efs.mount_point: {problem}"] if problem else []


@rule("ami_ssm_parameter")
def _ami_source(cfg: ClusterConfig, for_stack: bool) -> list[str]:
    if not cfg.ami and not SSM_PARAM_RE.match(cfg.ami_ssm_parameter):
        return ["ami_ssm_parameter: must be an SSM parameter path starting with /, or give ami"]
    return []


@rule("ami_ssm_parameter")
def _closed_driver_gpus_need_an_image(cfg: ClusterConfig, for_stack: bool) -> Iterable[str]:
    """V100 types on the default image, which cannot drive them (catalog/gpus.py); the template's
    rule of the same meaning (template/gpu.py) refuses them in the console."""
    from cfn_chainermn.catalog.gpus import driver_gap
    from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES

    if not for_stack or cfg.ami or cfg.ami_ssm_parameter != find("ami_ssm_parameter").default:
        return
    for name in cfg.instance_types:
        gap = driver_gap(INSTANCE_TYPES[name].gpu_model) if name in INSTANCE_TYPES else None
        if gap:
            yield (f"{cfg.setting_of_type(name)}: {name}: {gap}; the default image (Deep Learning Base OSS AMI) "
                   "cannot drive it: give --ami of an image with that driver (cfn-chainermn ami build --profile "
                   "current) or choose another type")


@rule("efa")
def _efa_on_needs_efa_types(cfg: ClusterConfig, for_stack: bool) -> Iterable[str]:
    from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES

    lacking = [t for t in cfg.instance_types if t in INSTANCE_TYPES and not INSTANCE_TYPES[t].efa]
    if cfg.efa == "on" and lacking:
        with_efa = ", ".join(sorted({t.family for t in INSTANCE_TYPES.values() if t.efa}))
        yield (f"efa: {' and '.join(lacking)} has no EFA; set efa to auto or off, or choose a type with EFA "
               f"(the larger sizes of {with_efa})")


def _gpus(n: int) -> str:
    return f"{n} GPU" + ("" if n == 1 else "s")


@rule("spot_instance_types")
def _spot_types_match_the_worker_type(cfg: ClusterConfig, for_stack: bool) -> Iterable[str]:
    """More Spot worker types: each known, new, and alike where a node's role depends on it: its
    GPU count (the hostfile's slots, one rank per GPU) and, when the launch template gives the
    workers EFA cards, its EFA cards (a type with fewer could not launch with them)."""
    from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES

    types = cfg.spot_types
    if not types or find("spot_instance_types").setting.problem("", cfg.spot_instance_types):
        return  # not a list of types: its own line says so
    if not cfg.spot_workers:
        yield "spot_instance_types: used only with Spot workers; add --spot-workers (spot_workers: true) or drop it"
        return
    worker = INSTANCE_TYPES.get(cfg.worker_type)
    for name in types:
        row = INSTANCE_TYPES.get(name)
        if row is None:
            yield f"spot_instance_types: unknown instance type {name!r}; list GPU types of the catalogue (docs/gpus.md)"
        elif name == cfg.worker_type or types.count(name) > 1:
            yield f"spot_instance_types: {name} is listed twice (the worker type counts); list each type once"
        elif worker is not None and row.gpus != worker.gpus:
            yield (f"spot_instance_types: {name} has {_gpus(row.gpus)}, the worker type {cfg.worker_type} has "
                   f"{_gpus(worker.gpus)}; list types with {_gpus(worker.gpus)}, since every worker runs one rank "
                   "per GPU")
        elif worker is not None and worker.efa and cfg.efa != "off" and (
                not row.efa or row.network_cards != worker.network_cards):
            yield (f"spot_instance_types: {name} has {row.network_cards if row.efa else 'no'} EFA cards, the worker "
                   f"type {cfg.worker_type} has {worker.network_cards}; list types with the same, or set efa off")


@rule("tags")
def _tags(cfg: ClusterConfig, for_stack: bool) -> list[str]:
    p = []
    for key, value in cfg.tags.items():
        if not TAG_KEY_RE.match(key) or key.lower().startswith("aws:"):
            p.append(f"tags: key {key!r} is invalid; use 1-128 characters, not starting with aws:")
        if len(value) > 256:
            p.append(f"tags.{key}: value is longer than 256 characters; shorten it")
    if len(cfg.tags) > 40:
        p.append("tags: more than 40 tags; CloudFormation stacks take at most 50 and the tool adds its own")
    return p


@rule("agent_package")
def _agent_package(cfg: ClusterConfig, for_stack: bool) -> list[str]:
    pinned = re.fullmatch(AGENT_PIN, cfg.agent_package) and len(cfg.agent_package) <= AGENT_PACKAGE_MAX
    if cfg.agent_package and not pinned:
        return ["agent_package: give cfn-chainermn==VERSION --hash=sha256:<64 hex digits> (a node installs this "
                "project from an index only pinned by hash)"]
    # for_stack: flags checked alone (`stack update --agent-source index`) may take the stack's own pin
    if for_stack and cfg.agent_source == "index" and not cfg.agent_package:
        return ["agent_package: agent_source index needs it: cfn-chainermn==VERSION --hash=sha256:<64 hex digits>"]
    if cfg.agent_package and cfg.agent_source != "index":
        return [f"agent_package: only used with agent_source index (it is {cfg.agent_source}); drop it"]
    return []


@rule("agent_index_url")
def _agent_index_url(cfg: ClusterConfig, for_stack: bool) -> list[str]:
    if cfg.agent_index_url and not re.match(r"^https://[^\s'\"`$\\;]+$", cfg.agent_index_url):
        return ["agent_index_url: give an https:// package index URL, or leave it empty for PyPI"]
    if len(cfg.agent_index_url) > AGENT_INDEX_URL_MAX:
        return [f"agent_index_url: longer than {AGENT_INDEX_URL_MAX} characters; give a shorter mirror URL "
                "(it must fit in the nodes' user data, and carry no credentials)"]
    return []
