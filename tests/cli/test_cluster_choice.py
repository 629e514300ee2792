"""A local cluster and a stack of the same NAME: the choice is explicit, said, and made before AWS.

Issue 12 (bad input): a `.local-cluster` in the working folder shadowed the stack NAME in
`job submit NAME --region ...`. Every command that takes a cluster NAME now says on stderr which
cluster it uses; a local cluster NAME with a stack's option on the command line is one line,
exit 2, asking for --local or --aws, and reaches neither AWS nor SSH. The resolver handed in is
the real one (cluster/handle.py), given a session whose Stubber'd clients have nothing queued
unless a test queues it, so any AWS call the decision let through would fail the test.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from fake_session import FakeSession

from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary
from cfn_chainermn.cli.services import Services
from cfn_chainermn.cluster import handle
from cfn_chainermn.local.state import LocalState

JOB = "20260101-000000-abcd"
COMMANDS = [["hostfile", "demo"], ["job", "list", "demo"], ["job", "logs", "demo", JOB],
            ["job", "cancel", "demo", JOB], ["ssh", "demo"], ["cluster", "check", "demo"], ["job", "submit", "demo"]]


def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the command reached for AWS")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A local cluster called demo (its master answers no SSH), found through CFN_CHAINERMN_STATE_DIR."""
    root = tmp_path / "cluster"
    root.mkdir()
    LocalState(name="demo", user="nobody", home=root / "home", port=1, python="python3", shared=root / "shared",
               master_id="master", master_ip="127.0.0.2").save(root)
    (root / "inventory.json").write_text('{"nodes": [{"instance_id": "master", "private_ip": "127.0.0.2"}]}')
    monkeypatch.setenv("CFN_CHAINERMN_STATE_DIR", str(root))
    for var in ("AWS_REGION", "AWS_PROFILE", "AWS_ENDPOINT_URL", "CFN_CHAINERMN_IDENTITY_FILE"):
        monkeypatch.delenv(var, raising=False)
    return root


@pytest.fixture
def stubs() -> dict[str, Stubber]:
    """CloudFormation, S3 and EC2 clients with nothing queued (active until the test ends)."""
    found = {s: Stubber(boto3.client(s, region_name="us-east-1")) for s in ("cloudformation", "s3", "ec2")}
    for stub in found.values():
        stub.activate()
    return found


def _run(args: list[str], stubs: dict[str, Stubber], tmp_path: Path) -> int:
    def resolve(name: str, **kwargs: Any) -> handle.Cluster:
        session = FakeSession({s: stub.client for s, stub in stubs.items()}, region_name=kwargs["access"].region)
        return handle.resolve(name, session=session, **kwargs)

    if args[:2] == ["job", "submit"]:
        script = tmp_path / "t.py"
        script.write_text("print(1)\n")
        args = [*args, "-n", "1", str(script)]
    if args[0] == "ssh":
        args = [*args, "--", "true"]
    return run_with_boundary(cli, args, Services(connect=_never, resolve=resolve))


def _tail(args: list[str], *more: str) -> list[str]:
    """`more` before the positional arguments that follow NAME (a script, JOB, `-- CMD`)."""
    at = args.index("demo") + 1
    return [*args[:at], *more, *args[at:]]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("flag", [["--region", "eu-west-1"], ["--profile", "p"], ["--endpoint-url", "http://127.0.0.1:9"],
                                  ["-i", "key.pem"], ["--config", "cluster.yaml"]])
def test_a_local_cluster_with_a_stacks_option_is_one_line_exit_2(
        command: list[str], flag: list[str], folder: Path, stubs: dict[str, Stubber], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cluster.yaml").write_text("region: eu-west-1\n")
    assert _run(_tail(command, *flag), stubs, tmp_path) == 2
    out, err = capsys.readouterr()
    long = {"-i": "--identity-file"}.get(flag[0], flag[0])
    assert (out, err) == ("", f"error: demo: the local cluster demo in {folder} and, by {long}, the AWS stack demo "
                              "could both be meant; add --aws for the stack or --local for the local cluster\n")


def test_the_issues_case_local_cluster_in_the_working_folder(folder: Path, stubs: dict[str, Stubber], tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """`.local-cluster` here holds demo; `job submit demo --region ...` no longer sends the job to it."""
    work = Path(tempfile.mkdtemp(prefix="cfnmn-choice-", dir="/tmp"))  # searchable: .local-cluster stays here
    try:
        work.chmod(0o755)
        shutil.copytree(folder, work / ".local-cluster")
        monkeypatch.delenv("CFN_CHAINERMN_STATE_DIR")
        monkeypatch.chdir(work)
        assert _run(["job", "submit", "demo", "--region", "us-east-1"], stubs, tmp_path) == 2
        assert capsys.readouterr().err == (
            "error: demo: the local cluster demo in .local-cluster and, by --region, the AWS stack demo could both "
            "be meant; add --aws for the stack or --local for the local cluster\n")
        assert _run(["hostfile", "demo"], stubs, tmp_path) == 0
        assert capsys.readouterr().err.splitlines()[0] == "using local cluster demo (.local-cluster)"
    finally:
        shutil.rmtree(work)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_says_it_uses_the_local_cluster(command: list[str], folder: Path, stubs: dict[str, Stubber],
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # AWS settings from the environment are every command's, not a word about this one: still local
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_PROFILE", "p")
    for extra in ([], ["--local"]):
        _run(_tail(command, *extra), stubs, tmp_path)  # the master answers no SSH: what matters is the choice
        err = capsys.readouterr().err
        assert err.splitlines()[0] == f"using local cluster demo ({folder})", err


@pytest.mark.parametrize("command", COMMANDS)
def test_aws_picks_the_stack_over_a_local_cluster_and_says_where(
        command: list[str], folder: Path, stubs: dict[str, Stubber], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "key.pem"
    key.write_text("not used: the stack is looked up first")
    stubs["cloudformation"].add_client_error("describe_stacks", "ValidationError", "Stack with id demo does not exist",
                                             expected_params={"StackName": "demo"})
    rc = _run(_tail(command, "--aws", "--region", "eu-west-1", "-i", str(key)), stubs, tmp_path)
    err = capsys.readouterr().err
    assert err == "using stack demo in eu-west-1\nerror: stack demo not found; `cfn-chainermn stack list` shows yours\n"
    assert rc == 3
    stubs["cloudformation"].assert_no_pending_responses()  # the stack was asked for: AWS, not the local folder


def test_aws_does_not_read_the_state_folder(folder: Path, stubs: dict[str, Stubber], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    (folder / "cluster.json").write_text("{not json")  # a local lookup would stop on this
    stubs["cloudformation"].add_client_error("describe_stacks", "ValidationError", "Stack with id demo does not exist")
    assert _run(["hostfile", "demo", "--aws", "--region", "eu-west-1"], stubs, tmp_path) == 3
    assert capsys.readouterr().err.splitlines()[0] == "using stack demo in eu-west-1"


@pytest.mark.parametrize(("args", "message"), [
    (["hostfile", "demo", "--local", "--region", "eu-west-1"],
     "--local and --region: --region is for an AWS stack; drop it, or use --aws for the stack"),
    (["hostfile", "demo", "--aws", "--state-dir", "."],
     "--aws and --state-dir: --state-dir is for a local cluster; drop it, or use --local"),
    (["hostfile", "other", "--local"],
     "no local cluster other in {folder}; start one with `cfn-chainermn local up --name other --state-dir {folder}`, "
     "or use --aws for the stack other"),
])
def test_contradictions_and_a_missing_local_cluster_exit_2(args: list[str], message: str, folder: Path,
                                                           stubs: dict[str, Stubber], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(args, stubs, tmp_path) == 2
    assert capsys.readouterr().err == f"error: {message.format(folder=folder)}\n"


def test_a_folder_named_on_the_command_line_needs_no_line(folder: Path, stubs: dict[str, Stubber], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """--state-dir DIR leaves nothing to choose (and `ssh NAME -- CMD` keeps its stderr the command's)."""
    assert _run(["hostfile", "demo", "--state-dir", str(folder)], stubs, tmp_path) == 0
    assert capsys.readouterr().err.startswith("note: 1 node not ready yet")
