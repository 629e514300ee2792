"""`cfn-chainermn node boot|refresh|status`: the agent on a cluster node.

The template's UserData runs `node boot` as root; a systemd timer runs `node refresh`; people
run `node status` when a node misbehaves. `local up` runs the same commands with --backend local.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from botocore.config import Config

    from cfn_chainermn.node.agent import AwsClients
    from cfn_chainermn.node.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

_FLAGS: list[tuple[str, dict[str, Any]]] = [
    ("--backend", {"type": click.Choice(["aws", "local"]), "help": "aws (default) or local (a folder cluster)."}),
    ("--role", {"type": click.Choice(["master", "worker"]), "help": "This node's role."}),
    ("--stack", {"help": "Stack name (AWS::StackName)."}),
    ("--region", {"help": "AWS region (else from instance metadata)."}),
    ("--bucket", {"help": "The stack's key bucket."}),
    ("--signal-resource", {"help": "Logical id to signal: ClusterMaster or WorkerGroup."}),
    ("--mount-point", {"help": "Shared file system mount point (default /efs)."}),
    ("--efs-id", {"help": "EFS file system id to mount (omit when the stack has no EFS)."}),
    ("--state-dir", {"help": "Local cluster folder (--backend local)."}),
    ("--node-id", {"help": "Node id (--backend local; on AWS the instance id from metadata)."}),
    ("--private-ip", {"help": "Node address (--backend local)."}),
    ("--ssh-port", {"type": int, "help": "sshd port of the nodes (default 22)."}),
    ("--host-key", {"help": "sshd host public key to publish (default /etc/ssh/ssh_host_ed25519_key.pub)."}),
    ("--user", {"help": "Cluster user (default chainer)."}),
    ("--home", {"help": "The user's home (default /home/USER)."}),
    ("--slots", {"type": int, "help": "Slots of this node (--backend local; AWS uses the GPU count)."}),
    ("--root", {"type": click.Path(file_okay=False), "help": "Directory standing for / (tests)."}),
    ("--endpoint-url", {"help": "AWS endpoint (an emulator such as moto)."}),
    ("--imds-url", {"help": "Instance metadata base URL (default http://169.254.169.254)."}),
    ("--imds-wait", {"type": float, "help": "Seconds to retry instance metadata before failing (default 180)."}),
    ("--key-wait", {"type": float, "help": "Seconds a worker waits for the master's key (default 900)."}),
    ("--stack-wheelhouse", {"help": "Folder with the Chainer stack's pinned files (--backend local)."}),
    ("--stack-wait", {"type": float, "help": "Seconds a worker waits for the master's Chainer stack (default 3600)."}),
]


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def agent_options(func: F) -> F:
    for flag, kwargs in reversed(_FLAGS):
        func = click.option(flag, _dest(flag), default=None, **kwargs)(func)
    return func


def _settings(kwargs: dict[str, Any], *, saved: bool) -> Any:
    """Flags over the saved agent.json (refresh) or over the defaults (boot)."""
    from cfn_chainermn.node.settings import Settings

    base = Settings().merged(kwargs)
    if saved:
        path = base.settings_path()
        if path.exists():
            base = Settings.load(path).merged(kwargs)
    return base


def _clients(settings: Settings, s3_config: Config | None = None) -> AwsClients:
    """The agent's clients through the one AWS factory (cli/services.py: retries, user agent; tests
    hand in their own); the region from IMDS when the flags gave none. `s3_config`: an S3 client
    of the command's own, from the same session (the Spot watch's shorter timeouts)."""
    from cfn_chainermn.cli.services import services
    from cfn_chainermn.node.agent import AwsClients
    from cfn_chainermn.node.imds import Imds

    if not settings.region:
        settings.region = Imds(settings.imds_url, wait=settings.imds_wait).get("placement/region")
    aws = services().connect(None, settings.region, settings.endpoint_url or None)
    s3 = aws.client("s3") if s3_config is None else aws.session.client(  # type: ignore[call-overload]
        "s3", endpoint_url=aws.endpoint_url or None, config=s3_config)
    return AwsClients(aws.client("ec2"), s3, aws.client("cloudformation"), aws.client("autoscaling"))


def _with_settings(saved: bool) -> Callable[[F], F]:
    def deco(func: F) -> F:
        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            own = {_dest(flag) for flag, _ in _FLAGS}  # the rest are the command's own options
            extra = {k: kwargs.pop(k) for k in list(kwargs) if k not in own}
            settings = _settings(kwargs, saved=saved)
            settings.check(boot=not saved)
            clients = None if settings.local else _clients(settings)
            return func(settings, clients, **extra)

        return wrapper  # type: ignore[return-value]

    return deco


@click.group()
def node() -> None:
    """The node agent: bootstraps a cluster node and keeps its hostfile true."""


@node.command()
@agent_options
@_with_settings(saved=False)
def boot(settings: Settings, clients: AwsClients | None) -> None:
    """Run every step once (identity, imds, user, ssh, efs, ready, hostfile) and signal the outcome.

    \b
    On AWS (as root, from UserData):
      cfn-chainermn node boot --role master --stack demo --region us-east-1 \\
          --bucket demo-keys-abc --signal-resource ClusterMaster --mount-point /efs --efs-id fs-0123
    Locally (from `cfn-chainermn local up`):
      cfn-chainermn node boot --backend local --state-dir DIR --role worker --node-id w1 \\
          --private-ip 127.0.0.3 --ssh-port 2222 --host-key DIR/nodes/w1/ssh_host_ed25519_key.pub \\
          --user chainer --home DIR/home --slots 1 --mount-point DIR/shared
    """
    from cfn_chainermn.node import agent

    state = agent.boot(settings, clients)
    click.echo(state.render(), nl=False)


@node.command()
@agent_options
@click.option("--jitter", "jitter", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="First wait this node's stable share of SECONDS (the timer passes 20), so nodes "
                   "whose timers fire together do not call AWS together.")
@_with_settings(saved=True)
def refresh(settings: Settings, clients: AwsClients | None, jitter: float) -> None:
    """Rewrite the hostfile and known_hosts from discovery (the systemd timer runs this).

    Settings come from the agent.json that `node boot` saved; flags override them. An API
    error keeps the last good hostfile and exits 1.
    """
    from cfn_chainermn.node import agent

    agent.refresh(settings, clients, jitter=jitter)


@node.command("spot-watch")
@agent_options
@click.option("--interval", type=float, default=5.0, show_default=True, help="Seconds between polls.")
@click.option("--ticks", type=int, default=None, help="Stop after this many polls (default: never).")
def spot_watch(interval: float, ticks: int | None, **kwargs: Any) -> None:
    """Poll the Spot interruption notice; on one, retract readiness and fail this node's jobs fast.

    On a Spot instance a systemd service runs this (settings from agent.json). A local node has
    no metadata service: give --imds-url of a stand-in that serves spot/instance-action.
    """
    from cfn_chainermn.errors import ConfigError
    from cfn_chainermn.node import agent, spot, spot_retract

    if interval <= 0 or (ticks is not None and ticks < 1):
        raise ConfigError("--interval must be above 0 and --ticks at least 1")
    settings = _settings(kwargs, saved=True)
    settings.check(boot=False)
    if settings.local and not kwargs.get("imds_url"):
        raise ConfigError("--imds-url is required with --backend local (a local node has no metadata service)")
    clients = None if settings.local else _clients(settings, spot_retract.s3_config())
    agent.spot_watch(settings, clients, spot.imds_poll(settings.imds_url), interval=interval, ticks=ticks)


@node.command()
@click.option("--backend", type=click.Choice(["aws", "local"]), default="aws", help="aws or local.")
@click.option("--state-dir", default="", help="Local cluster folder (--backend local).")
@click.option("--node-id", default="", help="Node id (--backend local).")
@click.option("--root", type=click.Path(file_okay=False), default="/", help="Directory standing for / (tests).")
@click.option("--json", "as_json", is_flag=True, help="Print the raw state file.")
def status(backend: str, state_dir: str, node_id: str, root: str, as_json: bool) -> int:
    """Print each boot step's state; exit 0 when the node is ready, else 1."""
    from cfn_chainermn.errors import ConfigError
    from cfn_chainermn.node.settings import Settings
    from cfn_chainermn.node.state import State

    settings = Settings(backend=backend, state_dir=state_dir, node_id=node_id, root=root)
    if settings.local and not (state_dir and node_id):
        raise ConfigError("--state-dir and --node-id are required with --backend local")
    path = settings.state_path()
    if not path.exists():
        raise ConfigError(f"no agent state at {path}: `cfn-chainermn node boot` has not run on this node")
    state = State.load(path)
    click.echo(path.read_text(encoding="utf-8") if as_json else state.render(), nl=False)
    return 0 if state.ready else 1
