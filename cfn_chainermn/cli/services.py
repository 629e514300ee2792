"""What commands reach the outside world through: the AWS factory and the cluster resolver.

The boundary hands a `Services` to click as the context object; commands ask `services()`
for it. A test passes its own (`run_with_boundary(cli, args, services=Services(connect=...))`)
instead of patching module attributes, so a stubbed AWS reaches every command the same way.
The defaults import nothing until called, so `--help` and `job submit` stay lean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import click

if TYPE_CHECKING:
    from cfn_chainermn.aws import Aws
    from cfn_chainermn.cluster.choice import Ask
    from cfn_chainermn.cluster.handle import AwsAccess, Cluster


class Resolve(Protocol):
    """NAME -> a cluster handle (cluster/handle.py's resolve)."""

    def __call__(self, name: str, *, state_dir: str | None, access: AwsAccess, login: bool = True,
                 ask: Ask | None = None, notice: Callable[[str], None] | None = None) -> Cluster: ...


def _connect(profile: str | None, region: str | None, endpoint_url: str | None) -> Aws:
    from cfn_chainermn.aws import connect

    return connect(profile, region, endpoint_url)


def _resolve(name: str, *, state_dir: str | None, access: AwsAccess, login: bool = True, ask: Ask | None = None,
             notice: Callable[[str], None] | None = None) -> Cluster:
    from cfn_chainermn.cluster.handle import resolve

    return resolve(name, state_dir=state_dir, access=access, login=login, ask=ask, notice=notice)


@dataclass
class Services:
    """`connect(profile, region, endpoint_url)` makes a command's AWS access; `resolve` finds a cluster."""

    connect: Callable[[str | None, str | None, str | None], Aws] = _connect
    resolve: Resolve = _resolve


def services() -> Services:
    """The running command's Services (the defaults outside a command, or when none was handed in)."""
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(Services) if ctx is not None else None
    return found if found is not None else Services()
