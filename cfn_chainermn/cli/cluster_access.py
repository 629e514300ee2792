"""How the commands that work with a running cluster find it and log in: one set of options.

NAME is a local cluster (its state folder holds a cluster of that name) or an AWS stack;
cluster/choice.py decides which from the folder and what this command line gave, before any
AWS call, and the command says which on stderr.
Every SSH connection verifies the master's host key against what its node agent published.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from cfn_chainermn.cli.aws_flags import access_from_config, aws_options, config_option, region_option

if TYPE_CHECKING:
    from cfn_chainermn.cluster.choice import Ask
    from cfn_chainermn.cluster.handle import Cluster
    from cfn_chainermn.cluster.remote import Remote

F = TypeVar("F", bound=Callable[..., Any])


def access_options(func: F) -> F:
    """How to find and log in to cluster NAME; the command gets `access` (a dict) in kwargs."""

    @click.option("--local/--aws", "on_local", default=None,
                  help="NAME is the local cluster (its state folder) / the AWS stack. Needed only when both "
                       "could be meant: a local cluster NAME exists and a stack's option (--region, ...) is given.")
    @click.option("--state-dir", envvar="CFN_CHAINERMN_STATE_DIR", type=click.Path(file_okay=False),
                  help="Folder of a local cluster (default: where `local up` puts it; CFN_CHAINERMN_STATE_DIR).")
    @click.option("-i", "--identity-file", envvar="CFN_CHAINERMN_IDENTITY_FILE", type=click.Path(dir_okay=False),
                  help="Private key of the stack's EC2 key pair (CFN_CHAINERMN_IDENTITY_FILE; else --config's).")
    @click.option("--accept-new-host-key", is_flag=True,
                  help="Trust whatever host key the master shows now (it is printed). Off by default.")
    @region_option("AWS region of the stack (else --config's).", dest="aws_region")
    @config_option("cluster.yaml the stack was created with (its region and identity_file are used).")
    @aws_options
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        config_file = kwargs.pop("config_file", None)
        on_local = kwargs.pop("on_local")
        kwargs["access"] = {k: kwargs.pop(k) for k in ("state_dir", "identity_file", "accept_new_host_key",
                                                        "aws_region", "aws_profile", "aws_endpoint_url")}
        kwargs["access"]["ask"] = _ask(on_local)
        region, identity = access_from_config(config_file)
        access = kwargs["access"]
        access["aws_region"] = access["aws_region"] or region
        access["identity_file"] = access["identity_file"] or identity
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


# The options that only mean something for a stack, by parameter name, as the user types them.
AWS_FLAGS = {"aws_region": "--region", "aws_profile": "--profile", "aws_endpoint_url": "--endpoint-url",
             "config_file": "--config", "identity_file": "--identity-file"}


def _ask(on_local: bool | None) -> Ask:
    """What this command line (not the environment) says about NAME's place (cluster/choice.py)."""
    from click.core import ParameterSource

    from cfn_chainermn.cluster.choice import Ask

    ctx = click.get_current_context()

    def typed(param: str) -> bool:
        return ctx.get_parameter_source(param) is ParameterSource.COMMANDLINE

    return Ask(want=None if on_local is None else "local" if on_local else "aws",
               aws_flags=tuple(flag for param, flag in AWS_FLAGS.items() if typed(param)),
               state_dir_flag=typed("state_dir"))


def resolve_cluster(name: str, access: dict[str, Any], *, login: bool = True) -> Cluster:
    """NAME's handle through the command's Services (tests hand in their own resolver)."""
    from cfn_chainermn.cli.services import services
    from cfn_chainermn.cluster.handle import AwsAccess

    return services().resolve(name, state_dir=access["state_dir"], access=AwsAccess(
        profile=access["aws_profile"], region=access["aws_region"], endpoint_url=access["aws_endpoint_url"],
        identity_file=access["identity_file"]), login=login, ask=access["ask"],
        notice=lambda line: click.echo(line, err=True))


def remote_for(cluster: Cluster, access: dict[str, Any]) -> Remote:
    if cluster.host_key_source.startswith("the EC2 console"):
        click.echo(f"note: the master's host key is checked against {cluster.host_key_source} "
                   "(its node agent has published none)", err=True)
    return cluster.remote(accept_new_host_key=bool(access["accept_new_host_key"]),
                          notice=lambda m: click.echo(f"warning: {m}", err=True))


def echo_line(line: str) -> None:
    click.echo(line)
