"""AWS access flags, apart from the cluster flags: `job` and `ssh` load them without the config model.

Keeping config.py (and its validation tables) out of the job commands' imports is a few ms of
every `job submit`, whose launch overhead is benchmarked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


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
