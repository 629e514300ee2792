"""A node whose metadata service does not answer (issue 12, item 10): the agent retries with
backoff for a bounded time, and when IMDS never answers it still signals FAILURE, under an id it
knows without IMDS and a suffix naming the cause, so the stack fails now with that reason in its
events instead of waiting out its 30-minute creation timeout."""

from __future__ import annotations

import errno
import socket
import threading
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.stub import Stubber
from node_sim import ImdsStandIn, SimCluster

from cfn_chainermn.errors import AgentError
from cfn_chainermn.node import agent
from cfn_chainermn.node.agent import AwsClients
from cfn_chainermn.node.imds import Imds
from cfn_chainermn.node.state import State


@pytest.fixture
def refusing(sim_cluster: SimCluster) -> Iterator[ImdsStandIn]:
    """The master's metadata on a port that refuses connections until `listen()` (bound, not
    listening): the port stays the stand-in's throughout. Closing the master's stand-in and binding
    its number again later let any server on the machine take the port meanwhile, and the agent
    then read that server (an SSH banner) instead of a refusal."""
    imds = ImdsStandIn(sim_cluster.nodes["master"].imds.meta, listening=False)
    yield imds
    imds.close()


def test_the_refusing_port_refuses_and_no_other_socket_can_take_it(refusing: ImdsStandIn) -> None:
    """What the tests below rest on: a connection is refused (RST, as from a closed port), and a
    socket that asks for the same address, even with SO_REUSEADDR, cannot have it (socket(7))."""
    port = int(refusing.server.server_address[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=30).close()
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError) as taken:
            other.bind(("127.0.0.1", port))
        assert taken.value.errno == errno.EADDRINUSE


def _failure_clients(c: SimCluster, unique_id: str) -> AwsClients:
    """moto EC2/S3; CloudFormation pinned to one FAILURE signal of ClusterMaster as `unique_id`."""
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    stub = Stubber(cfn)
    stub.add_response("signal_resource", {}, {"StackName": c.stack, "LogicalResourceId": "ClusterMaster",
                                              "UniqueId": unique_id, "Status": "FAILURE"})
    stub.activate()
    c.stubs.append(stub)
    return AwsClients(c.ec2, c.s3, cfn)


def test_imds_refusing_then_answering_boots_ready(sim_cluster: SimCluster, refusing: ImdsStandIn) -> None:
    c = sim_cluster
    m = c.nodes["master"]
    timer = threading.Timer(1.5, refusing.listen)
    timer.start()
    try:
        started = time.monotonic()
        state = agent.boot(c.settings("master", imds_url=refusing.url, imds_wait=30), c.clients("master"),
                           echo=c.echo())
        assert state.ready and time.monotonic() - started >= 1.5
        assert state.steps["identity"]["status"] == "ok" and m.instance_id in state.steps["identity"]["detail"]
        assert refusing.requests[0][:2] == ("PUT", "/latest/api/token")
        assert m.imds.requests == []  # the answers came from the stand-in that refused at first
    finally:
        timer.join()


def test_imds_answering_503_then_answering_boots_ready(sim_cluster: SimCluster) -> None:
    c = sim_cluster
    m = c.nodes["master"]
    m.imds.fail_first = 3
    state = agent.boot(c.settings("master", imds_wait=30), c.clients("master"), echo=c.echo())
    assert state.ready
    assert [code_ok for *_, code_ok in m.imds.requests[:3]] == [False] * 3
    assert m.imds.requests[3][:2] == ("PUT", "/latest/api/token")


@pytest.mark.parametrize("image,expected", [
    ({"sys/devices/virtual/dmi/id/board_asset_tag": "INSTANCE\n"}, "INSTANCE-no-imds"),
    ({"proc/sys/kernel/random/boot_id": "0b5e2f1c-6d0e-4a51-9a7b-3c4d5e6f7a8b\n"},
     "boot-0b5e2f1c-6d0e-4a51-9a7b-3c4d5e6f7a8b-no-imds"),
])
def test_imds_never_answering_signals_failure_within_the_bound(
        sim_cluster: SimCluster, refusing: ImdsStandIn, image: dict[str, str], expected: str) -> None:
    """Nitro shows the instance id in DMI; elsewhere this boot's id stands in for it."""
    c = sim_cluster
    m = c.nodes["master"]
    for rel, text in image.items():
        (m.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (m.root / rel).write_text(text.replace("INSTANCE", m.instance_id))
    unique_id = expected.replace("INSTANCE", m.instance_id)
    url = refusing.url
    started = time.monotonic()
    with pytest.raises(AgentError) as info:
        agent.boot(c.settings("master", imds_url=url, imds_wait=2), _failure_clients(c, unique_id), echo=c.echo())
    assert time.monotonic() - started < 30, "bounded by --imds-wait, not by the stack's timeout"
    c.stubs[-1].assert_no_pending_responses()  # FAILURE went out, under the stand-in id
    assert f"identity step failed: instance metadata service at {url} did not answer within 2 s" in str(info.value)
    state = State.load(m.root / "var/lib/cfn-chainermn/state.json")
    assert not state.ready and state.steps["identity"]["status"] == "failed"
    assert state.steps["signal"]["status"] == "ok"
    assert state.steps["signal"]["detail"].startswith(f"FAILURE sent to demo/ClusterMaster as {unique_id} (")
    log = c.get(f"logs/{unique_id.removesuffix('-no-imds')}/agent.log").decode()
    assert "did not answer within 2 s" in log and "tries, last:" in log


def test_imds_never_answering_and_no_credentials_says_so(sim_cluster: SimCluster, refusing: ImdsStandIn) -> None:
    """IMDS down also means no instance-role credentials: the signal fails, and both reasons
    reach the log and the console (the EC2 system log) rather than nothing at all."""
    c = sim_cluster
    m = c.nodes["master"]
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    stub = Stubber(cfn)
    stub.add_client_error("signal_resource", "AccessDenied", "Unable to locate credentials")
    stub.activate()
    echo = c.echo()
    with pytest.raises(AgentError, match="identity step failed: instance metadata service"):
        agent.boot(c.settings("master", imds_url=refusing.url, imds_wait=1), AwsClients(c.ec2, c.s3, cfn), echo=echo)
    state = State.load(m.root / "var/lib/cfn-chainermn/state.json")
    assert state.steps["signal"]["status"] == "failed"
    assert "signal failed: SignalResource failed: AccessDenied" in echo.getvalue()
    assert "did not answer within 1 s" in echo.getvalue()


def test_refusal_is_an_answer_not_an_outage() -> None:
    """A 4xx (here: no such path) is not retried: only silence, 429 and 5xx are."""
    imds = ImdsStandIn({"instance-id": "i-0123456789abcdef0"})
    try:
        client = Imds(imds.url, wait=30)
        with pytest.raises(AgentError, match="instance metadata mac: HTTP 404"):
            client.identity()
        assert client.tries == 2  # the token, then mac: no retry
    finally:
        imds.close()


def test_a_reply_that_is_not_http_is_an_outage_not_an_answer() -> None:
    """Whatever answers on the metadata address before IMDS does (here: an SSH banner) is retried
    like silence, and the bound's message names it, instead of failing the step as unexpected."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def banner() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    thread = threading.Thread(target=banner, daemon=True)
    thread.start()
    try:
        client = Imds(f"http://127.0.0.1:{server.getsockname()[1]}", wait=0.5, first_delay=0.05)
        with pytest.raises(AgentError, match=r"did not answer within 0.5 s .*last: not an HTTP reply \(BadStatusLine"):
            client.identity()
        assert client.tries >= 2
    finally:
        stop.set()
        server.shutdown(socket.SHUT_RDWR)
        server.close()
        thread.join(timeout=30)
