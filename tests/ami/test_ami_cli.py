"""`cfn-chainermn ami ...`: bad input (exit 2, one line), what reaches Packer, ami list."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cfn_chainermn import __version__
from cfn_chainermn.ami import packer as ami_packer
from cfn_chainermn.cli import cli
from cfn_chainermn.cli.boundary import run_with_boundary

DATA = Path(__file__).parent / "data"
CIDR = "203.0.113.7/32"


def fails_with(capsys: pytest.CaptureFixture[str], args: list[str], *needles: str) -> str:
    """Exit 2, exactly one `error:` line on stderr containing every needle, nothing on stdout."""
    assert run_with_boundary(cli, args) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in err and out == ""
    return lines[0]


def test_unknown_profile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fails_with(capsys, ["ami", "render", "nope", "-o", str(tmp_path / "o")],
               "unknown version profile 'nope'", "chainer-ami-0.1.0, cuda12, current, efa")
    assert not (tmp_path / "o").exists()


def test_unsupported_profile_says_why(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fails_with(capsys, ["ami", "render", "efa", "-o", str(tmp_path / "o")],
               "profile efa: EFA needs no profile of its own", "ami build cuda12")


@pytest.mark.parametrize("change,needles", [
    (lambda d: d["python"]["packages"].__setitem__(
        next(i for i, p in enumerate(d["python"]["packages"]) if p["name"] == "cupy-cuda110"),
        {"name": "cupy-cuda102", "version": "7.8.0", "gpu": True, "sha256": ["0" * 64]}),
     ("python.packages[cupy-cuda102]: built for CUDA 10.2 but cuda.version is 11.0", "use cupy-cuda110")),
    # Chainer 7.8.1 runs on CuPy 8-13 (it only warns); CuPy 14 is built for numpy 2
    (lambda d: [p.__setitem__("version", "14.0.0") for p in d["python"]["packages"]
                if p["name"] == "cupy-cuda110"],
     ("cupy-cuda110]: version 14.0.0 does not fit chainer 7.8.1", "pin cupy-cuda110 13.x", "numpy 2")),
    (lambda d: [p.__setitem__("version", "6.7.0") for p in d["python"]["packages"] if p["name"] == "chainer"],
     ("cupy-cuda110]: version 7.8.0 does not fit chainer 6.7.0", "Chainer N needs CuPy N (pin cupy-cuda110 6.x)")),
    (lambda d: [p.__setitem__("version", "2.0.0") for p in d["python"]["packages"] if p["name"] == "numpy"],
     ("python.packages[numpy]: 2.0.0 breaks chainer 7.8.1", "pin numpy<2")),
    (lambda d: d["openmpi"].pop("prefix"), ("openmpi.prefix: missing; set it in current.yaml",)),
    (lambda d: d["cuda"].__setitem__("gpg_fingerprint", "abc"), ("cuda.gpg_fingerprint",)),
])
def test_incompatible_or_incomplete_profile(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            edit_profile: Callable[..., None], change: Any,
                                            needles: tuple[str, ...]) -> None:
    edit_profile("current", change)
    fails_with(capsys, ["ami", "render", "current", "-o", str(tmp_path / "o")],
               "profile current: ", *needles)
    assert not (tmp_path / "o").exists()


def test_null_checksum_is_refused_at_render(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                            edit_profile: Callable[..., None]) -> None:
    edit_profile("current", lambda d: d["openmpi"].__setitem__("sha256", None))
    assert run_with_boundary(cli, ["ami", "profiles"]) == 0  # it still loads, as documentation
    capsys.readouterr()
    fails_with(capsys, ["ami", "render", "current", "-o", str(tmp_path / "o")],
               "openmpi.sha256 is null; fill it with the sha256 published for https://download.open-mpi.org/")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("where", ["/proc/x", "FILE/sub"])
def test_unwritable_output_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path, where: str) -> None:
    """-o where nothing can be created: one line naming -o, exit 2, no traceback."""
    (tmp_path / "FILE").write_text("")
    out = where.replace("FILE", str(tmp_path / "FILE"))
    fails_with(capsys, ["ami", "render", "current", "-o", out],
               f"-o {out}: cannot write {out}/", "give -o a directory you can create and write")


def test_template_variable_missing(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   recipe_copy: Path) -> None:
    script = recipe_copy / "scripts" / "60-system.sh.j2"
    script.write_text(script.read_text().replace("{{ p.name }}", "{{ p.no_such_field }}"))
    fails_with(capsys, ["ami", "render", "current", "-o", str(tmp_path / "o")],
               "ami/scripts/60-system.sh.j2: ", "no_such_field")


def test_build_bad_input(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    fails_with(capsys, ["ami", "build", "current"], "region: not set; pass --region")
    base = ["ami", "build", "current", "--region", "us-east-1"]
    fails_with(capsys, [*base, "--ssh-cidr", "203.0.113.7/32", "--var", "bogus=1"],
               "--var bogus: unknown variable", "instance_type")
    fails_with(capsys, [*base, "--ssh-cidr", "203.0.113.7/32", "--var", "novalue"], "expected NAME=VALUE")
    # the SSH source is validated, like --var, before anything is rendered or built
    fails_with(capsys, [*base, "--ssh-cidr", "203.0.113.7/32", "--var", "ssh_cidr=0.0.0.0/0"],
               "--var ssh_cidr: unknown variable")


@pytest.mark.parametrize("args,needles", [
    ([], ("--ssh-cidr: required", "203.0.113.7/32")),
    (["--ssh-cidr", "0.0.0.0/0"], ("--ssh-cidr: 0.0.0.0/0 opens the build instance's SSH to the whole internet",
                                   "--allow-ssh-from-anywhere")),
    (["--ssh-cidr", "128.0.0.0/1"], ("--ssh-cidr: 128.0.0.0/1 opens the build instance's SSH to a large part of "
                                     "the internet", "--allow-ssh-from-anywhere")),
    (["--ssh-cidr", "203.0.113.7/24"], ("--ssh-cidr: '203.0.113.7/24' is not an IPv4 network",)),
    (["--ssh-cidr", "example.com"], ("--ssh-cidr: 'example.com' is not an IPv4 network",)),
])
def test_build_needs_a_narrow_ssh_cidr(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                       args: list[str], needles: tuple[str, ...]) -> None:
    """Packer's temporary security group would otherwise open SSH to 0.0.0.0/0."""
    fails_with(capsys, ["ami", "build", "current", "--region", "us-east-1",
                        "-o", str(tmp_path / "o"), *args], *needles)
    assert not (tmp_path / "o").exists()


def test_build_passes_the_ssh_cidr_to_packer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """--ssh-cidr reaches both packer validate and packer build; 0.0.0.0/0 only when asked for."""
    seen: list[list[str]] = []

    def validate(out: Path, region: str, wheel: Path, variables: Any, ssh_cidr: str) -> None:
        seen.append(["validate", ssh_cidr])

    def build(out: Path, region: str, wheel: Path, variables: Any, echo: Any, *, ssh_cidr: str,
              env: Any) -> dict[str, str]:
        seen.append(["build", ssh_cidr])
        return {"us-east-1": "ami-0123456789abcdef0"}

    monkeypatch.setattr(ami_packer, "shellcheck", lambda out: None)
    monkeypatch.setattr(ami_packer, "packer_validate", validate)
    monkeypatch.setattr(ami_packer, "packer_build", build)
    stray = tmp_path / "w.whl"
    stray.write_bytes(b"")
    wrong = ["ami", "build", "current", "--region", "us-east-1", "--agent-wheel", str(stray),
             "-o", str(tmp_path / "o"), "--ssh-cidr", "198.51.100.0/24"]
    assert run_with_boundary(cli, wrong) == 2  # not a wheel of this version: refused before packer runs
    assert "--agent-wheel: w.whl is not a wheel file name" in capsys.readouterr().err and seen == []
    wheel = tmp_path / f"cfn_chainermn-{__version__}-py3-none-any.whl"
    wheel.write_bytes(b"")
    base = ["ami", "build", "current", "--region", "us-east-1", "--agent-wheel", str(wheel),
            "-o", str(tmp_path / "o")]
    assert run_with_boundary(cli, [*base, "--ssh-cidr", "198.51.100.0/24"]) == 0
    assert run_with_boundary(cli, [*base, "--ssh-cidr", "0.0.0.0/0", "--allow-ssh-from-anywhere"]) == 0
    assert seen == [["validate", "198.51.100.0/24"], ["build", "198.51.100.0/24"],
                    ["validate", "0.0.0.0/0"], ["build", "0.0.0.0/0"]]
    assert "us-east-1\tami-0123456789abcdef0" in capsys.readouterr().out


def test_build_without_agent_wheel_bakes_the_wheel_the_templates_carry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Byte for byte: the bootstrap checks a baked agent against the sha256 its UserData names."""
    from cfn_chainermn.template import agent_bundle

    baked: list[tuple[str, bytes]] = []

    def build(out: Path, region: str, wheel: Path, variables: Any, echo: Any, *, ssh_cidr: str,
              env: Any) -> dict[str, str]:
        baked.append((wheel.name, wheel.read_bytes()))
        return {"us-east-1": "ami-0123456789abcdef0"}

    monkeypatch.setattr(ami_packer, "shellcheck", lambda out: None)
    monkeypatch.setattr(ami_packer, "packer_validate", lambda *args, **kwargs: None)
    monkeypatch.setattr(ami_packer, "packer_build", build)
    args = ["ami", "build", "current", "--region", "us-east-1", "-o", str(tmp_path / "o"), "--ssh-cidr", CIDR]
    assert run_with_boundary(cli, args) == 0
    bundle = agent_bundle.current()
    assert baked == [(bundle.filename, bundle.wheel)]


def test_render_says_the_next_step(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run_with_boundary(cli, ["ami", "render", "current", "-o", str(tmp_path / "o")]) == 0
    assert "; next: cfn-chainermn ami validate current\n" in capsys.readouterr().err


@pytest.mark.parametrize("args,needles", [
    (["ami", "render", "--profile", "current", "-o", "never"],
     ("No such option '--profile'.", "The version profile is an argument now: `cfn-chainermn ami render current ...`",
      "(see `cfn-chainermn ami render --help`)")),
    (["ami", "validate", "--profile=chainer-ami-0.1.0"],
     ("No such option '--profile'.", "`cfn-chainermn ami validate chainer-ami-0.1.0 ...`")),
    (["ami", "build", "--profile", "current", "--ssh-cidr", CIDR],
     ("Missing argument 'PROFILE'.", "`cfn-chainermn ami build current ...`; --profile is the AWS profile")),
    (["ami", "build", "--profile", "myaws", "--ssh-cidr", CIDR],
     ("Missing argument 'PROFILE'.", "`cfn-chainermn ami build PROFILE ...`; --profile is the AWS profile")),
])
def test_old_profile_option_says_to_pass_an_argument(capsys: pytest.CaptureFixture[str], args: list[str],
                                                     needles: tuple[str, ...]) -> None:
    """`--profile NAME` was the version profile of render/validate/build; it is the PROFILE argument now."""
    fails_with(capsys, args, *needles)
    assert not Path("never").exists()


FAKE_PACKER = """#!/bin/sh
echo "$1 AWS_PROFILE=${AWS_PROFILE-unset} AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID-unset} $*" >>"$PACKER_LOG"
if [ "$1" = build ]; then cp "$PACKER_MANIFEST" packer-manifest.json; cat "$PACKER_TRANSCRIPT"; fi
"""


@pytest.fixture
def fake_packer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], list[str]]:
    """`ami build` with a `packer` on PATH that records its environment and replays a recorded build.

    Returns a function: the build's arguments (the wheel, -o and --ssh-cidr are added) -> the
    lines the fake packer logged, `SUBCOMMAND AWS_PROFILE=... AWS_ACCESS_KEY_ID=... ARGS`.
    """
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "packer").write_text(FAKE_PACKER)
    (bin_dir / "packer").chmod(0o755)
    log = tmp_path / "packer.log"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("PACKER_LOG", str(log))
    monkeypatch.setenv("PACKER_MANIFEST", str(DATA / "packer-manifest.json"))
    monkeypatch.setenv("PACKER_TRANSCRIPT", str(DATA / "packer-build-machine-readable.txt"))
    monkeypatch.setattr(ami_packer, "shellcheck", lambda out: None)
    wheel = tmp_path / f"cfn_chainermn-{__version__}-py3-none-any.whl"
    wheel.write_bytes(b"")
    # the AWS profile lives in the test's own config file (conftest: AWS_CONFIG_FILE)
    Path(os.environ["AWS_CONFIG_FILE"]).write_text("[profile myaws]\nregion = eu-west-1\n")

    def build(args: list[str]) -> list[str]:
        log.unlink(missing_ok=True)
        code = run_with_boundary(cli, ["ami", "build", "current", "--agent-wheel", str(wheel),
                                       "-o", str(tmp_path / "o"), "--ssh-cidr", CIDR, *args])
        lines = log.read_text().splitlines() if log.exists() else []
        assert code == 0 or not lines  # a refused build never starts packer
        return lines if code == 0 else [f"exit {code}"]

    return build


def test_build_gives_packer_the_aws_profile(fake_packer: Callable[[list[str]], list[str]],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """--profile is the AWS profile: Packer gets AWS_PROFILE, and no key variables that would win over it."""
    validate, build = fake_packer(["--profile", "myaws", "--region", "us-east-1"])
    assert validate.startswith("validate AWS_PROFILE=unset ")  # offline: it needs no credentials
    assert build.startswith("build AWS_PROFILE=myaws AWS_ACCESS_KEY_ID=unset ") and "region=us-east-1" in build
    out = capsys.readouterr().out
    assert out == "us-east-1\tami-0123456789abcdef0\nus-west-2\tami-0fedcba9876543210\n"
    # without --profile, Packer's environment is this one
    build = fake_packer(["--region", "us-east-1"])[1]
    assert build.startswith("build AWS_PROFILE=unset AWS_ACCESS_KEY_ID=testing ")


def test_build_region_from_the_aws_profile(fake_packer: Callable[[list[str]], list[str]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    assert "-var region=eu-west-1 " in fake_packer(["--profile", "myaws"])[1]
    monkeypatch.setenv("AWS_PROFILE", "myaws")  # the variable is the same as the option
    build = fake_packer([])[1]
    assert build.startswith("build AWS_PROFILE=myaws AWS_ACCESS_KEY_ID=unset ") and "-var region=eu-west-1 " in build


def test_build_refuses_an_unknown_aws_profile_or_an_endpoint(fake_packer: Callable[[list[str]], list[str]],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert fake_packer(["--profile", "nosuch"]) == ["exit 2"]
    assert "error: The config profile (nosuch) could not be found; check --profile / AWS_PROFILE" in (
        capsys.readouterr().err)
    assert fake_packer(["--endpoint-url", "http://127.0.0.1:9"]) == ["exit 2"]
    assert "error: --endpoint-url: Packer does not take an endpoint" in capsys.readouterr().err


def test_ami_list_reads_versions_from_tags(moto: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import boto3

    from cfn_chainermn.ami import profiles as ami_profiles
    from cfn_chainermn.ami.render import RECIPE_DIR, tags

    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto.url)
    base = ec2.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    inst = ec2.run_instances(ImageId=base, MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    mine = ec2.create_image(InstanceId=inst, Name="cfn-chainermn-current-1")["ImageId"]
    other = ec2.create_image(InstanceId=inst, Name="someone-elses")["ImageId"]
    profile_tags = tags(ami_profiles.load(RECIPE_DIR, "current"))
    ec2.create_tags(Resources=[mine], Tags=[{"Key": k, "Value": v} for k, v in profile_tags.items()])
    ec2.create_tags(Resources=[other], Tags=[{"Key": "Name", "Value": "x"}])
    args = ["ami", "list", "--region", "us-east-1", "--endpoint-url", moto.url]
    assert run_with_boundary(cli, [*args, "--output", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["image_id"] for r in rows] == [mine]
    assert rows[0]["profile"] == "current"
    assert rows[0]["versions"]["chainer"] == "7.8.1"
    assert rows[0]["versions"]["cupy"] == "cupy-cuda110==7.8.0"
    assert rows[0]["versions"]["openmpi"] == "4.1.6"
    assert run_with_boundary(cli, args) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{mine}\tcurrent\t") and "chainer=7.8.1 cupy=cupy-cuda110==7.8.0 cuda=11.0" in line


@pytest.mark.parametrize("args", [["ami", "profiles"], ["ami", "validate"],
                                  ["ami", "render", "current", "-o", "out-never-written"]])
def test_without_the_recipe_every_command_says_so(args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """An installed copy has no ami/ folder: say so (exit 2) instead of listing nothing (exit 0)."""
    monkeypatch.setenv("CFN_CHAINERMN_AMI_DIR", str(tmp_path / "no-recipe"))
    assert run_with_boundary(cli, args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no AMI recipe at ") and "source checkout" in err and len(err.splitlines()) == 1
