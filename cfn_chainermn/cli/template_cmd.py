"""`cfn-chainermn template`: write the console-ready CloudFormation template.

The config (file and flags) only sets the parameters' Defaults, so the output still takes
any value in the console. troposphere is imported inside the command to keep `--help` fast.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import click

from cfn_chainermn.cli.options import cluster_options, config_from_options
from cfn_chainermn.errors import ConfigError


def _write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one step, so `make templates` never leaves half a template behind.

    The folder must exist: a mistyped -o must not leave a tree of new folders behind."""
    if not path.parent.exists():
        raise ConfigError(f"-o: folder {path.parent} does not exist; create it first or give a file in an "
                          "existing folder")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


@click.command()
@cluster_options
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", show_default=True,
              help="YAML (long-form functions) or indented JSON.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write to this file instead of standard output.")
def template(fmt: str, output: Path | None, **kwargs: Any) -> None:
    """Write the console-ready CloudFormation template of the cluster.

    Settings from --config and the flags become the parameters' defaults; KeyName and SshCidr
    stay without a default unless given, so the console asks for them.

    \b
    Examples:
      cfn-chainermn template > cluster.yaml
      cfn-chainermn template --workers 7 --instance-type p3dn.24xlarge --format json -o cluster.json
    """
    cfg = config_from_options(kwargs)
    from cfn_chainermn.template import MAX_S3_BYTES, render

    text = render(cfg, fmt)
    if output is None:
        click.echo(text, nl=False)
        return
    try:
        _write_atomically(output, text)
    except OSError as exc:
        raise ConfigError(f"-o: cannot write {output}: {exc.strerror}; give a file in a writable folder") from None
    click.echo(f"wrote {output} ({len(text.encode()):,} bytes, the node agent included; upload it in the "
               f"console or pass it as a TemplateURL: up to {MAX_S3_BYTES:,} bytes)", err=True)
