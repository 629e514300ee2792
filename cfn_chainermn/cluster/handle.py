"""NAME -> how to reach that cluster: a local cluster's state folder, or an AWS stack.

Both give the same handle (master address and port, the user, the key to log in with, the
master's host key as the node agent published it, the shared folder, the node list), so the
job commands never care which one they talk to.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cfn_chainermn.cluster import choice
from cfn_chainermn.cluster.channel_io import LineSink
from cfn_chainermn.cluster.console_keys import ConsoleKeys
from cfn_chainermn.cluster.console_keys import parse as parse_console
from cfn_chainermn.cluster.hostfile import Node
from cfn_chainermn.cluster.remote import Remote
from cfn_chainermn.errors import ConfigError, RemoteError
from cfn_chainermn.jobs import mpi

if TYPE_CHECKING:
    from boto3.session import Session
    from mypy_boto3_ec2 import EC2Client

    from cfn_chainermn.local.state import LocalState

AWS_USER = "chainer"
AWS_PYTHON = "python3"


@dataclass(frozen=True)
class Cluster:
    name: str
    kind: choice.Kind
    master_host: str
    ssh_port: int
    user: str
    key_file: str
    master_host_key: str | None
    shared: str
    python: str | None
    network: mpi.Network
    list_nodes: Callable[[], list[Node]]
    state_dir: str | None = None
    ssh_config: str | None = None  # `ssh -F` file on the master, when ~/.ssh is not the cluster's
    host_fingerprints: tuple[str, ...] = ()  # from the console output, when no key was published
    host_key_source: str = ""  # where master_host_key (or the fingerprints) came from, for notices
    host_key_hint: str = ""  # why there is neither, for the refusal

    def remote(self, *, accept_new_host_key: bool = False, connect_timeout: float = 10.0,
               notice: LineSink | None = None) -> Remote:
        return Remote(self.master_host, port=self.ssh_port, user=self.user, key_file=self.key_file,
                      host_key=self.master_host_key, accept_new_host_key=accept_new_host_key,
                      host_fingerprints=self.host_fingerprints, host_key_hint=self.host_key_hint,
                      connect_timeout=connect_timeout, notice=notice)


def local_cluster(state_dir: str | Path, state: LocalState) -> Cluster:
    """The handle of a local cluster from its recorded state."""
    from cfn_chainermn.node import local_backend

    root = Path(state_dir).resolve()
    key = local_backend.host_keys(root).get(state.master_id)
    ssh_config = None
    extra: tuple[tuple[str, str], ...] = ()
    if not state.as_root:
        # Run as an ordinary user: ssh reads ~/.ssh of the real home, not the cluster's.
        ssh_config = str(state.home / ".ssh" / "config")
        extra = (("plm_rsh_agent", f"ssh -F {ssh_config}"),)
    return Cluster(
        name=state.name, kind="local", master_host=state.master_ip, ssh_port=state.port,
        user=state.user, key_file=str(state.key_file),
        master_host_key=key, shared=str(state.shared), python=state.python,
        network=mpi.Network(cidr=mpi.LOOPBACK_CIDR, instance_type=mpi.LOCAL_INSTANCE_TYPE,
                            ssh_port=state.port, extra_mca=extra),
        list_nodes=lambda: local_backend.list_nodes(root), state_dir=str(root), ssh_config=ssh_config)


@dataclass(frozen=True)
class AwsAccess:
    profile: str | None = None
    region: str | None = None
    endpoint_url: str | None = None
    identity_file: str | None = None


def _identity_file(access: AwsAccess) -> str:
    """The private key to log in with, checked before any AWS call (a usage error, exit 2)."""
    if not access.identity_file:
        raise ConfigError("--identity-file: give the private key of the stack's EC2 key pair "
                          "(or set CFN_CHAINERMN_IDENTITY_FILE, or identity_file in the --config file)")
    path = os.path.expanduser(access.identity_file)
    if not os.path.isfile(path):
        raise ConfigError(f"--identity-file: {path} does not exist; give the private key of the stack's "
                          "EC2 key pair")
    return path


def aws_cluster(name: str, access: AwsAccess, *, session: Session | None = None, login: bool = True) -> Cluster:
    """The handle of stack NAME: outputs for the master, the bucket for its host key.

    The host key comes from cluster-key/ (written by the master's role only), never from
    nodes/<master-id>/, which any node of the stack can overwrite; when the agent has not
    published it, from what cloud-init printed to the master's EC2 console.
    """
    from cfn_chainermn import aws, names
    from cfn_chainermn.cluster import inventory
    from cfn_chainermn.stack.cfn import outputs

    key_file = _identity_file(access) if login else ""
    session = session or aws.make_session(access.profile, access.region)
    cfn = aws.client(session, "cloudformation", access.endpoint_url)
    s3 = aws.client(session, "s3", access.endpoint_url)
    ec2 = aws.client(session, "ec2", access.endpoint_url)
    out = outputs(cfn, name)
    try:
        # No public name (a private subnet, reached over VPN or a bastion): the private address.
        host = out.get(names.OUT_MASTER_DNS) or out[names.OUT_MASTER_PRIVATE_IP]
        master_id = out[names.OUT_MASTER_INSTANCE_ID]
        bucket = out[names.OUT_BUCKET]
    except KeyError as exc:
        raise RemoteError(f"stack {name} has no output {exc}; is it a cfn-chainermn stack that finished "
                          "creating? (`cfn-chainermn stack outputs NAME`)") from exc
    key = inventory.master_host_key(s3, bucket) if login else None
    console, unread = (ConsoleKeys(), "") if key or not login else _console_keys(ec2, master_id)
    source = f"s3://{bucket}/{names.MASTER_HOST_KEY}" if key else f"the EC2 console output of {master_id}"
    hint = (f"s3://{bucket}/{names.MASTER_HOST_KEY} is missing and the console output of {master_id} "
            + (f"could not be read ({unread})" if unread else "shows no keys yet"))
    subnet, itype, efa = _master_facts(ec2, master_id)
    return Cluster(
        name=name, kind="aws", master_host=host, ssh_port=22, user=AWS_USER,
        key_file=key_file, master_host_key=key or next(iter(console.keys), None),
        shared=out.get(names.OUT_MOUNT_POINT, names.DEFAULT_MOUNT_POINT), python=AWS_PYTHON,
        network=mpi.Network(cidr=subnet, instance_type=itype, efa_attached=efa),
        list_nodes=lambda: inventory.list_nodes(ec2, s3, name, bucket),
        host_fingerprints=console.fingerprints, host_key_source=source if key or console else "",
        host_key_hint="" if key or console else hint)


def _console_keys(ec2: EC2Client, instance_id: str) -> tuple[ConsoleKeys, str]:
    """What cloud-init printed to the master's console, or nothing and why it could not be read."""
    from botocore.exceptions import BotoCoreError, ClientError

    from cfn_chainermn.aws import short_error

    try:
        output = ec2.get_console_output(InstanceId=instance_id).get("Output") or ""
    except (ClientError, BotoCoreError) as exc:
        return ConsoleKeys(), short_error(exc)
    return parse_console(output), ""


def _master_facts(ec2: EC2Client, instance_id: str) -> tuple[str, str, bool]:
    """The master's subnet CIDR (the network the ranks must keep to), its instance type, and whether
    it has an EFA interface (the stack's Efa setting applies to every node alike)."""
    from cfn_chainermn.aws import aws_call

    res = aws_call("DescribeInstances", lambda: ec2.describe_instances(InstanceIds=[instance_id]))
    inst = res["Reservations"][0]["Instances"][0]
    sub = aws_call("DescribeSubnets", lambda: ec2.describe_subnets(SubnetIds=[inst["SubnetId"]]))
    efa = any(ni.get("InterfaceType") == "efa" for ni in inst.get("NetworkInterfaces", []))
    return str(sub["Subnets"][0]["CidrBlock"]), str(inst["InstanceType"]), efa


def resolve(name: str, *, state_dir: str | None, access: AwsAccess, login: bool = True, ask: choice.Ask | None = None,
            notice: Callable[[str], None] | None = None, session: Session | None = None) -> Cluster:
    """The local cluster or the AWS stack NAME, as cluster/choice.py decides from the state folder
    and `ask` (what the command line said) before any AWS call; `notice` hears which one.

    `login=False` (the hostfile command) needs no key and reads no host key.
    """
    from cfn_chainermn import aws
    from cfn_chainermn.local import places

    ask = ask or choice.Ask()
    given = state_dir or os.environ.get("CFN_CHAINERMN_STATE_DIR")
    folder = Path(given) if given else places.default_state_dir()
    state = None if ask.want == "aws" else _local_state(folder, name)  # --aws: the folder is not read
    kind = choice.decide(name, ask, local_found=state is not None, folder=str(folder),
                         folder_given=state_dir is not None)
    say = notice or (lambda line: None)
    if kind == "local" and state is not None:
        if not ask.state_dir_flag:  # --state-dir DIR on the command line left nothing to choose
            say(choice.using_local(name, str(folder)))
        return local_cluster(folder, state)
    session = session or aws.make_session(access.profile, access.region)
    say(choice.using_stack(name, session.region_name))
    return aws_cluster(name, access, session=session, login=login)


def _local_state(folder: Path, name: str) -> LocalState | None:
    """NAME's recorded state in `folder`, trusted only if no one else could have planted it."""
    from cfn_chainermn.local import state as local_state
    from cfn_chainermn.local.state_dir import check_trusted

    if os.path.lexists(folder):  # its cluster.json says where jobs (and their --env) go
        check_trusted(folder.resolve())
    state = local_state.load(folder, name=name)
    if state is not None:
        check_trusted(folder.resolve())  # still, after reading: no one swapped it in meanwhile
    return state
