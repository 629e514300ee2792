"""`cfn-chainermn template`: placeholder until the template builders land."""

from __future__ import annotations

from typing import Any

import click

from cfn_chainermn.cli.options import cluster_options, config_from_options


@click.command()
@cluster_options
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None)
def template(fmt: str, output: str | None, **kwargs: Any) -> None:
    """Write the console-ready CloudFormation template of the cluster."""
    config_from_options(kwargs)
    raise click.ClickException("template: not built yet")
