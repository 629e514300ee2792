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
from stack_helpers import REGION, refused_port

from cfn_chainermn.aws import Aws
from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary, state
from cfn_chainermn.cli.services import Services


class Stubbed(Aws):
    """An Aws whose every client answers from a Stubber queue (a call with nothing queued fails).

    The endpoint is a closed local port, so not even a bug could send a request anywhere.
    """

    def __init__(self) -> None:
        super().__init__(boto3.session.Session(region_name=REGION), f"http://127.0.0.1:{refused_port()}")
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
def services() -> Services:
    """What `run_cli` hands the CLI as its AWS factory and resolver: the real ones unless a fixture swaps them."""
    return Services()


@pytest.fixture
def stubbed(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubbed]:
    """Real botocore clients (parameters validated against the API model) with stubbed answers.

    The CLI's AWS factory hands out this Aws, so commands run against the same queues; at the
    end every queued answer must have been asked for.
    """
    stub = Stubbed()
    services.connect = lambda profile, region, endpoint_url: stub
    monkeypatch.setattr("cfn_chainermn.stack.watch.POLL_SECONDS", 0)
    yield stub
    for stubber in stub.stubbers.values():
        stubber.assert_no_pending_responses()
        stubber.deactivate()


@pytest.fixture
def no_aws(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to reach AWS fails the test: the CLI's AWS factory refuses to make a session."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("bad input reached AWS")

    services.connect = refuse
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{refused_port()}")  # and nothing listens there


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str], services: Services) -> Callable[..., Result]:
    """Run `cfn-chainermn ARGS` through the real error boundary with `services`; exit code, stdout, stderr."""

    def run(*args: str) -> Result:
        state.debug = False
        capsys.readouterr()
        code = run_with_boundary(cli, list(args), services)
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
