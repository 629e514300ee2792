"""The options every AWS command shares, defined once: --profile, --endpoint-url, --region, --config, --output.

Apart from the cluster flags (options.py): `job` and `ssh` load these without the config
model. Keeping config.py (and its validation tables) out of the job commands' imports is a few
ms of every `job submit`, whose launch overhead is benchmarked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from cfn_chainermn.aws import Aws

F = TypeVar("F", bound=Callable[..., Any])

OUTPUT_CHOICE = click.Choice(["text", "json"])
REGION_HELP = "AWS region (else AWS_REGION / the profile's region)."
OUTPUT_HELP = "text for people, json for scripts (on stdout; messages go to stderr)."


def cluster_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """A cluster's NAME, checked before anything is looked up: a name no stack can have would
    otherwise cost a round of AWS retries before 'does not exist'."""
    import re

    from cfn_chainermn.names import STACK_NAME_PATTERN, STACK_NAME_RULE

    if not re.fullmatch(STACK_NAME_PATTERN, value):
        raise click.BadParameter(f"{value!r} is not a cluster (stack) name; {STACK_NAME_RULE}", ctx, param)
    return value


def name_argument(func: F) -> F:
    """NAME, as every cluster command takes it (a stack's name, or a local cluster's)."""
    return click.argument("name", callback=cluster_name)(func)


def finite_seconds(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A FloatRange lets nan and inf through (every comparison with nan is false)."""
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a number of seconds; give a finite number such as 600", ctx, param)
    return value


def aws_options(func: F) -> F:
    """`--profile` and `--endpoint-url` (AWS_PROFILE, AWS_ENDPOINT_URL too); `--region` is per command."""

    @click.option("--profile", "aws_profile", envvar="AWS_PROFILE", default=None,
                  help="AWS profile (AWS_PROFILE).")
    @click.option("--endpoint-url", "aws_endpoint_url", envvar="AWS_ENDPOINT_URL", default=None,
                  help="Send AWS calls to this endpoint (AWS_ENDPOINT_URL), e.g. an emulator.")
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def region_option(help: str = REGION_HELP, dest: str = "region") -> Callable[[F], F]:
    """`--region`; the text says where a missing one comes from for this command."""
    return click.option("--region", dest, default=None, help=help)


def config_option(help: str) -> Callable[[F], F]:
    """`--config`: the cluster.yaml a stack was created with, read for what this command needs of it."""
    return click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None, help=help)


def output_option(help: str | None = OUTPUT_HELP) -> Callable[[F], F]:
    """`--output text|json`."""
    return click.option("--output", "output", type=OUTPUT_CHOICE, default="text", show_default=True, help=help)


@dataclass(frozen=True)
class AwsTarget:
    """Where a command's AWS calls go; `connect()` goes through the command's Services."""

    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None

    def connect(self) -> Aws:
        from cfn_chainermn.cli.services import services

        return services().connect(self.profile, self.region, self.endpoint_url)


def stack_target(func: F) -> F:
    """--region, --config (its `region:` applies when no --region is given), --profile, --endpoint-url.

    The command gets them as one `target` (an AwsTarget): the cluster.yaml a stack was created
    with finds it again in later commands.
    """

    @region_option("AWS region (else --config's region, AWS_REGION, the profile's).")
    @config_option("cluster.yaml the stack was created with (its region is used).")
    @aws_options
    @functools.wraps(func)
    def wrapper(*args: Any, config_file: str | None = None, region: str | None = None, aws_profile: str | None = None,
                aws_endpoint_url: str | None = None, **kwargs: Any) -> Any:
        target = AwsTarget(aws_profile, region or region_from_config(config_file), aws_endpoint_url)
        return func(*args, target=target, **kwargs)

    return wrapper  # type: ignore[return-value]


def region_from_config(path: str | None) -> str | None:
    """The region of a validated cluster.yaml, or None (no file, or no region in it)."""
    return access_from_config(path)[0]


def access_from_config(path: str | None) -> tuple[str | None, str | None]:
    """Region and identity_file of a validated cluster.yaml (None for each one it lacks)."""
    if not path:
        return None, None
    from cfn_chainermn.config.model import load

    cfg = load(path)
    return cfg.region or None, cfg.identity_file or None
