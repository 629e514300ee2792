"""The steps around a stack write: preflight before it, staging for it, pruning wheels after a delete.

Used by stack/operations.py; each step reports through `Progress` and raises the package's
errors (PreflightError lists every problem at once).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from cfn_chainermn.config.model import ClusterConfig

if TYPE_CHECKING:
    from cfn_chainermn.aws import Aws
    from cfn_chainermn.stack.follow import Progress


def prepare(aws: Aws, progress: Progress, cfg: ClusterConfig, current_az: str = "") -> ClusterConfig:
    """Preflight (raises with every problem), then the config with the AZ it settled on."""
    from cfn_chainermn.stack import preflight

    if current_az and not cfg.network.availability_zone and not cfg.network.subnet_id:
        # An update keeps the AZ the stack was created in: a new AZ would replace the subnet.
        cfg = dataclasses.replace(cfg, network=dataclasses.replace(cfg.network, availability_zone=current_az))
    result = preflight.run(aws, cfg)
    for warning in result.warnings:
        progress.say(f"warning: {warning}")
    types = sorted(cfg.instance_types)
    progress.say(f"preflight: ok: key pair {cfg.key_name}; {', '.join(types)} offered in "
                 f"{result.availability_zone}; image {result.image_id}")
    if result.availability_zone and not cfg.network.subnet_id:
        cfg = dataclasses.replace(cfg, network=dataclasses.replace(
            cfg.network, availability_zone=result.availability_zone))
    return cfg


def check_quota_for(aws: Aws, progress: Progress, name: str, params: dict[str, str], workers: int) -> None:
    """Before growing a stack: the vCPU quota still covers it (PreflightError if not)."""
    from cfn_chainermn.catalog.instance_types import INSTANCE_TYPES
    from cfn_chainermn.errors import PreflightError
    from cfn_chainermn.stack import preflight

    master, worker = params.get("MasterInstanceType", ""), params.get("WorkerInstanceType", "")
    if master not in INSTANCE_TYPES or worker not in INSTANCE_TYPES:
        return
    probe = ClusterConfig(name=name, instance_type=master, worker_instance_type=worker, workers=workers,
                          spot_workers=params.get("SpotWorkers") == "true")
    result = preflight.Result()
    preflight.check_quotas(aws, probe, result)
    for warning in result.warnings:
        progress.say(f"warning: {warning}")
    if result.problems:
        raise PreflightError("\n".join(result.problems))


def template_and_parameters(aws: Aws, progress: Progress, cfg: ClusterConfig, agent_source: str,
                            agent_wheel: Path | None) -> tuple[dict[str, str], dict[str, str]]:
    """Stage what needs staging; the template source and the stack parameters."""
    from cfn_chainermn.config.params import template_parameters
    from cfn_chainermn.stack.cfn import compact, template_source
    from cfn_chainermn.stack.staging import Stager
    from cfn_chainermn.template import render

    stager = Stager(aws)
    params = template_parameters(cfg)
    if agent_source == "staged":
        params["AgentWheelS3Path"] = stager.agent_wheel(agent_wheel)
        progress.say(f"agent: staged s3://{params['AgentWheelS3Path']}")
    body = compact(render(cfg, "json"))
    return template_source(body, lambda text: stager.template(cfg.name, text)), params


def prune_wheels(aws: Aws, progress: Progress) -> None:
    """After a delete: drop staged agent wheels no stack uses (stack/wheel_gc.py); a failure only warns."""
    from botocore.exceptions import BotoCoreError

    from cfn_chainermn.aws import mapped
    from cfn_chainermn.errors import CfnChainermnError
    from cfn_chainermn.stack.staging import bucket_name
    from cfn_chainermn.stack.wheel_gc import KEEP_HOURS, prune_agent_wheels

    try:
        account = aws.account_id()
        bucket = bucket_name(account, aws.region)
        with mapped(f"pruning agent wheels in s3://{bucket}"):
            pruned = prune_agent_wheels(aws.client("s3"), aws.client("cloudformation"), bucket, account)
    except (CfnChainermnError, BotoCoreError) as exc:
        progress.say(f"warning: staged agent wheels not pruned: {exc}")
        return
    if pruned.busy:
        progress.say(f"staged agent wheels not pruned: stack {pruned.busy} is changing; the next `stack delete` "
                     "will")
    elif pruned.removed:
        progress.say(f"removed {pruned.removed} staged agent wheel(s) that no stack uses from s3://{bucket} "
                     f"({pruned.kept} kept: in use or staged within {KEEP_HOURS} h)")
