"""The steps around a stack write: preflight before it, the template (staged when big) for it.

Used by stack/operations.py; each step reports through `Progress` and raises the package's
errors (PreflightError lists every problem at once).
"""

from __future__ import annotations

import dataclasses
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


def template_and_parameters(aws: Aws, cfg: ClusterConfig) -> tuple[dict[str, str], dict[str, str]]:
    """The template source (staged in S3 when too big to pass inline, as it is with the agent
    inside) and the stack parameters."""
    from cfn_chainermn.config.params import template_parameters
    from cfn_chainermn.stack.cfn import compact, template_source
    from cfn_chainermn.stack.staging import Stager
    from cfn_chainermn.template import render

    stager = Stager(aws)
    body = compact(render(cfg, "json"))
    return template_source(body, lambda text: stager.template(cfg.name, text)), template_parameters(cfg)
