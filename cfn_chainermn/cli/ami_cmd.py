"""`cfn-chainermn ami ...`: render, validate, build and list the cluster AMI.

Thin commands over ami.py / ami_profiles.py / ami_packer.py; every bad input is a ConfigError
(exit 2) raised before Packer or AWS is touched.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from cfn_chainermn.cli.aws_flags import aws_options, output_option, region_option


def _recipe() -> Path:
    """The ami/ folder; it ships with the source checkout, not inside an installed package."""
    from cfn_chainermn.ami.render import RECIPE_DIR
    from cfn_chainermn.errors import ConfigError

    recipe = Path(os.environ.get("CFN_CHAINERMN_AMI_DIR") or RECIPE_DIR)
    if not (recipe / "profiles").is_dir():
        raise ConfigError(f"no AMI recipe at {recipe} (it ships with the source checkout, not the installed "
                          "package); run from a clone of cfn-chainermn or set CFN_CHAINERMN_AMI_DIR to its ami/")
    return recipe


def _build_access(region: str | None, aws_profile: str | None, aws_endpoint_url: str | None) -> str:
    """The build region: --region, else AWS_REGION / AWS_DEFAULT_REGION, else the AWS profile's.

    Reading the AWS profile here (local files, no AWS call) refuses an unknown one before anything is
    rendered or built. Packer cannot be sent to another endpoint, so --endpoint-url is refused (and
    AWS_ENDPOINT_URL gets a note when Packer starts).
    """
    from cfn_chainermn.cli.services import services
    from cfn_chainermn.errors import ConfigError

    source = click.get_current_context().get_parameter_source("aws_endpoint_url")
    if aws_endpoint_url and source is click.core.ParameterSource.COMMANDLINE:
        raise ConfigError("--endpoint-url: Packer does not take an endpoint (it ignores AWS_ENDPOINT_URL), "
                          "so `ami build` always runs in AWS; drop --endpoint-url")
    value = services().connect(aws_profile, region, None).session.region_name or ""
    if not value:
        raise ConfigError("region: not set; pass --region, set AWS_REGION, or give the AWS profile a region")
    return str(value)


def _placeholder_wheel(tmp: Path) -> Path:
    """`packer validate` only checks that the file provisioner's source exists."""
    from cfn_chainermn import __version__

    wheel = tmp / f"cfn_chainermn-{__version__}-py3-none-any.whl"
    wheel.write_bytes(b"")
    return wheel


def _agent_wheel(given: Path | None, tmp: Path) -> Path:
    """The wheel the image installs: the one given (checked), else this package's own, byte for
    byte the one its templates carry (template/agent_bundle.py), so the bootstrap's sha256 matches.

    Never a dist/ leftover: it may carry the same version as older code.
    """
    from cfn_chainermn.errors import ConfigError
    from cfn_chainermn.template import agent_bundle

    if given is not None:
        problem = agent_bundle.wheel_problem(given)
        if problem:
            raise ConfigError(f"--agent-wheel: {problem}")
        return given
    bundle = agent_bundle.current()
    wheel = tmp / bundle.filename
    wheel.write_bytes(bundle.wheel)
    return wheel


class _VersionProfileCommand(click.Command):
    """A command whose version profile is the PROFILE argument; the old `--profile NAME` says so.

    The usage error of `--profile NAME` (no such option; on `ami build`, where --profile is the AWS
    profile, the missing PROFILE) gets the command to type instead.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        old = _old_profile_value(args)
        try:
            return super().parse_args(ctx, args)
        except (click.NoSuchOption, click.MissingParameter) as exc:
            if old is None or (isinstance(exc, click.NoSuchOption) and exc.option_name != "--profile") or (
                    isinstance(exc, click.MissingParameter) and getattr(exc.param, "name", "") != "profile_name"):
                raise
            example = old if old in _version_profiles() else "PROFILE"
            aws = "; --profile is the AWS profile" if isinstance(exc, click.MissingParameter) else ""
            raise click.UsageError(f"{exc.format_message()} The version profile is an argument now: "
                                   f"`{ctx.command_path} {example} ...`{aws}", ctx=ctx) from exc


def _old_profile_value(args: list[str]) -> str | None:
    """The value given to --profile (`--profile X` or `--profile=X`), or None."""
    for i, arg in enumerate(args):
        if arg == "--profile":
            return args[i + 1] if i + 1 < len(args) else ""
        if arg.startswith("--profile="):
            return arg.partition("=")[2]
    return None


def _version_profiles() -> list[str]:
    from cfn_chainermn.ami import profiles as ami_profiles
    from cfn_chainermn.errors import ConfigError

    try:
        return ami_profiles.available(_recipe())
    except ConfigError:
        return []


@click.group()
def ami() -> None:
    """The AMI recipe in ami/: version profiles, Packer template, provisioning scripts."""


@ami.command("profiles")
@output_option(help=None)
def profiles(output: str) -> None:
    """List the version profiles and what each pins."""
    from cfn_chainermn.ami import profiles as ami_profiles

    recipe = _recipe()
    rows: list[dict[str, Any]] = []
    for name in ami_profiles.available(recipe):
        raw = ami_profiles.read_raw(recipe, name)
        if raw.get("unsupported"):
            rows.append({"name": name, "buildable": False, "description": raw.get("description", ""),
                         "reason": " ".join(str(raw["unsupported"]).split())})
            continue
        prof = ami_profiles.load(recipe, name)
        rows.append({"name": name, "buildable": True, "description": prof.description,
                     "versions": prof.versions()})
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['name']}: {row['description']}")
        if row["buildable"]:
            click.echo("  " + ", ".join(f"{k} {v}" for k, v in row["versions"].items()))
        else:
            click.echo(f"  not buildable: {row['reason']}")


@ami.command("render", cls=_VersionProfileCommand)
@click.argument("profile_name", metavar="PROFILE")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
def render(profile_name: str, output_dir: Path) -> None:
    """Write the Packer template and provisioning scripts of version profile PROFILE into a directory.

    PROFILE is one of `cfn-chainermn ami profiles`, e.g. current.
    """
    from cfn_chainermn.ami import render as ami_mod

    written = ami_mod.render_profile(profile_name, output_dir, recipe_dir=_recipe())
    for path in written:
        click.echo(str(path))
    click.echo(f"rendered profile {profile_name} into {output_dir} ({len(written)} files); "
               f"next: cfn-chainermn ami validate {profile_name}", err=True)


@ami.command("validate", cls=_VersionProfileCommand)
@click.argument("profile_name", metavar="[PROFILE]", required=False)
@region_option("Region passed to packer validate (default AWS_REGION or us-east-1).")
def validate(profile_name: str | None, region: str | None) -> None:
    """shellcheck the rendered scripts and run `packer validate` on the template (offline).

    PROFILE: one version profile (default: every buildable one).
    """
    from cfn_chainermn.ami import packer as ami_packer
    from cfn_chainermn.ami import profiles as ami_profiles
    from cfn_chainermn.ami import render as ami_mod

    recipe = _recipe()
    names = [profile_name] if profile_name else ami_profiles.buildable(recipe)
    region = region or os.environ.get("AWS_REGION") or "us-east-1"
    with tempfile.TemporaryDirectory(prefix="cfn-chainermn-ami-") as tmp:
        wheel = _placeholder_wheel(Path(tmp))
        for name in names:
            out = Path(tmp) / name
            written = ami_mod.render_profile(name, out, recipe_dir=recipe)
            ami_packer.shellcheck(out)
            ami_packer.packer_validate(out, region, wheel)
            scripts = sum(1 for p in written if p.suffix == ".sh")
            click.echo(f"ok {name}: shellcheck clean ({scripts} scripts), packer validate passed")


@ami.command("build", cls=_VersionProfileCommand)
@click.argument("profile_name", metavar="PROFILE")
@region_option("Build region (else AWS_REGION / the AWS profile's region).")
@click.option("--ssh-cidr", default=None, metavar="CIDR",
              help="Required: where Packer connects from; the build instance's SSH is open to this range only.")
@click.option("--allow-ssh-from-anywhere", is_flag=True, help="Permit --ssh-cidr 0.0.0.0/0.")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="Packer variable: instance_type, ami_regions, ami_public, ami_name_prefix, volume_size.")
@click.option("--copy-to", multiple=True, metavar="REGION", help="Copy the AMI to this region too (repeatable).")
@click.option("--public", is_flag=True, help="Make the AMI public, and so unencrypted (default private, encrypted).")
@click.option("--agent-wheel", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="cfn-chainermn wheel of this version to install (default: a fresh build of this checkout).")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to render (default out/ami/PROFILE).")
@aws_options
def build(profile_name: str, region: str | None, ssh_cidr: str | None, allow_ssh_from_anywhere: bool,
          variables: tuple[str, ...], copy_to: tuple[str, ...], public: bool, agent_wheel: Path | None,
          output_dir: Path | None, aws_profile: str | None, aws_endpoint_url: str | None) -> None:
    """Render version profile PROFILE, check it, then `packer build`; prints the AMI id of each region.

    PROFILE is one of `cfn-chainermn ami profiles`, e.g. current. Packer runs with the AWS profile
    of --profile (AWS_PROFILE), as every AWS call of this tool does.
    """
    from cfn_chainermn.ami import packer as ami_packer
    from cfn_chainermn.ami import render as ami_mod

    build_region = _build_access(region, aws_profile, aws_endpoint_url)
    cidr = ami_packer.check_ssh_cidr(ssh_cidr, allow_ssh_from_anywhere)
    extra = ami_packer.parse_vars(variables)
    if copy_to:
        extra["ami_regions"] = json.dumps(list(copy_to))
    if public:
        extra["ami_public"] = "true"
    out = output_dir or Path("out") / "ami" / profile_name
    ami_mod.render_profile(profile_name, out, recipe_dir=_recipe())
    ami_packer.shellcheck(out)
    with tempfile.TemporaryDirectory(prefix="cfn-chainermn-wheel-") as tmp:
        wheel = _agent_wheel(agent_wheel, Path(tmp))
        ami_packer.packer_validate(out, build_region, wheel, extra, ssh_cidr=cidr)
        if aws_endpoint_url:
            click.echo("note: Packer does not read AWS_ENDPOINT_URL; the build runs in AWS itself", err=True)
        amis = ami_packer.packer_build(out, build_region, wheel, extra,
                                       echo=lambda line: click.echo(line, err=True), ssh_cidr=cidr,
                                       env=ami_packer.packer_env(aws_profile))
    for reg, image in sorted(amis.items()):
        click.echo(f"{reg}\t{image}")
    first = amis.get(build_region) or next(iter(amis.values()))
    click.echo(f"use it: cfn-chainermn stack create NAME --ami {first} ... (or `ami: {first}` in "
               "cluster.yaml)", err=True)


# aws_options' --endpoint-url is for emulators; Packer cannot use one, so the build refuses it.
for _param in build.params:
    if _param.name == "aws_endpoint_url" and isinstance(_param, click.Option):
        _param.help = "Refused: Packer cannot be sent to another endpoint, the build runs in AWS."


@ami.command("list")
@region_option()
@output_option(help=None)
@aws_options
def list_(region: str | None, output: str, aws_profile: str | None, aws_endpoint_url: str | None) -> None:
    """This account's cfn-chainermn AMIs in a region, with the versions from their tags."""
    from cfn_chainermn.ami import packer as ami_packer
    from cfn_chainermn.aws import region_of
    from cfn_chainermn.cli.services import services

    aws = services().connect(aws_profile, region, aws_endpoint_url)
    region_of(aws.session)  # a usage error, before any call, when no region is set
    rows = ami_packer.list_images(aws.client("ec2"))
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no cfn-chainermn AMIs in this region; build one with `cfn-chainermn ami build`", err=True)
        return
    for row in rows:
        versions = row["versions"]
        summary = " ".join(f"{k}={versions[k]}" for k in ("chainer", "cupy", "cuda", "openmpi")
                           if k in versions)
        vis = "public" if row["public"] else "private"
        click.echo(f"{row['image_id']}\t{row['profile']}\t{row['created']}\t{row['state']}\t{vis}\t{summary}")
