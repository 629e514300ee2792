"""Shared fixtures: golden files, a moto server on 127.0.0.1, and AWS settings that can
never reach a real account."""

from __future__ import annotations

import difflib
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from moto_support import start_moto, stop_moto

ROOT = Path(__file__).resolve().parent.parent
CLOSED_PORT = 9  # discard: nothing listens on it here
GOLDEN = ROOT / "tests" / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files")


@pytest.fixture(autouse=True)
def _no_debug() -> Iterator[None]:
    """--debug is process-wide state (in-process CLI calls keep it): off before and after every test."""
    from cfn_chainermn.cli.boundary import state

    state.debug = False
    yield
    state.debug = False


@pytest.fixture(autouse=True)
def _offline_aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Dummy credentials, no shared config, and every default endpoint a closed local port.

    A boto3 client that a test forgets to point at moto or a Stubber then fails on 127.0.0.1
    instead of reaching *.amazonaws.com.
    """
    home = tmp_path_factory.mktemp("aws-home")
    for var in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{CLOSED_PORT}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """Compare text with tests/golden/NAME; `--update-golden` (make golden) rewrites it."""
    update = bool(request.config.getoption("--update-golden"))

    def check(name: str, text: str) -> None:
        path = GOLDEN / name
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return
        if not path.exists():
            pytest.fail(f"golden file {path} is missing; run `make golden` and review it")
        expected = path.read_text(encoding="utf-8")
        if expected != text:
            diff = "".join(difflib.unified_diff(
                expected.splitlines(True), text.splitlines(True), str(path), "actual", n=2))
            pytest.fail(f"{name} differs from its golden file (make golden refreshes it):\n{diff[:6000]}")

    return check


class MotoServer:
    """A moto server process on 127.0.0.1; `reset()` empties every backend."""

    def __init__(self, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.port = port
        self.proc = proc
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=10).read()


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server for the session (its backends load once: the first stack costs ~5 s), on
    the port it bound itself (tests/moto_support.py: no other server can have taken it)."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    try:
        proc, port = start_moto(log)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield MotoServer(port, proc, log)
    finally:
        stop_moto(proc)


@pytest.fixture
def moto(moto_server: MotoServer) -> Iterator[MotoServer]:
    """The shared moto server, reset before each test."""
    moto_server.reset()
    yield moto_server
