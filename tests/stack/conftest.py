"""Fixtures for the stack lifecycle: Stubber-backed clients, a CLI runner, a seeded moto server."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from aws_emulator import SeededMoto  # scripts/ is not a package
from stack_helpers import REGION, free_port

from cfn_chainermn.aws import Aws
from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary, state


class Stubbed(Aws):
    """An Aws whose every client answers from a Stubber queue (a call with nothing queued fails).

    The endpoint is a closed local port, so not even a bug could send a request anywhere.
    """

    def __init__(self) -> None:
        super().__init__(boto3.session.Session(region_name=REGION), f"http://127.0.0.1:{free_port()}")
        self.stubbers: dict[str, Stubber] = {}

    def client(self, service: str) -> Any:
        made = super().client(service)
        if service not in self.stubbers:
            self.stubbers[service] = Stubber(made)
            self.stubbers[service].activate()
        return made

    def __call__(self, service: str) -> Stubber:
        self.client(service)
        return self.stubbers[service]


@pytest.fixture
def stubbed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubbed]:
    """Real botocore clients (parameters validated against the API model) with stubbed answers.

    The CLI's `connect` hands out this Aws, so commands run against the same queues; at the
    end every queued answer must have been asked for.
    """
    stub = Stubbed()
    monkeypatch.setattr("cfn_chainermn.cli.stack_flow.connect", lambda *a, **k: stub)
    monkeypatch.setattr("cfn_chainermn.stack.watch.POLL_SECONDS", 0)
    monkeypatch.setattr("cfn_chainermn.cli.stack_flow.POLL_SECONDS", 0)
    yield stub
    for stubber in stub.stubbers.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach AWS fails the test: no session may even be made."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("bad input reached AWS")

    monkeypatch.setattr("cfn_chainermn.cli.stack_flow.connect", refuse)
    monkeypatch.setattr("cfn_chainermn.aws.make_session", refuse)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # and nothing listens there


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Result]:
    """Run `cfn-chainermn ARGS` through the real error boundary; exit code, stdout, stderr."""

    def run(*args: str) -> Result:
        state.debug = False
        capsys.readouterr()
        code = run_with_boundary(cli, list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[SeededMoto]:
    server = SeededMoto(region=REGION).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def emulator(emulator_server: SeededMoto, monkeypatch: pytest.MonkeyPatch) -> SeededMoto:
    """The seeded moto server, reset; AWS_ENDPOINT_URL points every client at it."""
    emulator_server.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator_server.url)
    return emulator_server
