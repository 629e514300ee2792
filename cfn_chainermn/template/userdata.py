"""UserData and the agent it boots: the bootstrap script, and the agent wheel inside the template.

UserData is template/bootstrap.py (standard-library Python, run by cloud-init as root) with its
CONFIG block filled in by Fn::Sub. Everything that can fail in an interesting way (identity,
keys, EFS, hostfile, signalling) lives in the agent, in Python, with tests; the bootstrap only
gets the agent (baked, or out of this template's NodeAgent resource) and, when that fails,
signals FAILURE itself so the stack fails fast with a reason instead of timing out.
Template values land inside double-quoted Python strings: every parameter used here has an
AllowedPattern or AllowedValues that keeps quotes, backslashes and newlines out
(tests/template/test_template_userdata.py checks it).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping
from pathlib import Path

from troposphere import Base64, If, Ref, Sub, Template, cloudformation

from cfn_chainermn import __version__
from cfn_chainermn.names import AGENT_RESOURCE, MASTER_RESOURCE, WORKER_GROUP_RESOURCE
from cfn_chainermn.template.agent_bundle import current
from cfn_chainermn.template.parameters import Inputs
from cfn_chainermn.template.storage import Storage

BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
SIGNAL_RESOURCE = {"master": MASTER_RESOURCE, "worker": WORKER_GROUP_RESOURCE}
USER_DATA_LIMIT = 16_384  # EC2: 16 KB of user data before base64
_CONFIG_BLOCK = re.compile(r"# @CONFIG begin.*?# @CONFIG end\n", re.S)
# ${Name} is filled by Fn::Sub; the fixed values are this build's.
_CONFIG = ('CONFIG = {{"role": "{role}", "stack": "${{AWS::StackName}}", "region": "${{AWS::Region}}", '
           '"url_suffix": "${{AWS::URLSuffix}}",\n          "signal": "{signal}", "bucket": "${{KeyBucket}}", '
           '"mount_point": "${{MountPoint}}", "efs_id": "${{EfsId}}",\n          "source": "${{AgentSource}}", '
           '"package": "${{AgentPackage}}", "index_url": "${{AgentIndexUrl}}",\n          '
           '"version": "{version}", "sha256": "{sha256}"}}\n')
# Sample values that stand in for Fn::Sub when the script is run in tests and shown in docs.
SAMPLE_VALUES: Mapping[str, str] = {
    "AWS::StackName": "demo",
    "AWS::Region": "us-east-1",
    "AWS::URLSuffix": "amazonaws.com",
    "KeyBucket": "demo-keybucket-1a2b3c4d5e6f",
    "MountPoint": "/efs",
    "EfsId": "fs-0123456789abcdef0",
    "AgentSource": "template",
    "AgentPackage": "",
    "AgentIndexUrl": "",
}


def compact(source: str) -> str:
    """The bootstrap without its docstrings and comment lines: EC2 takes 16 KB of user data, and
    the reader has the commented file (template/bootstrap.py); the result still compiles."""
    tree = ast.parse(source)
    drop: set[int] = set()
    for node in [tree, *ast.walk(tree)]:
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            drop.update(range(body[0].lineno, (body[0].end_lineno or body[0].lineno) + 1))
    lines = [line for n, line in enumerate(source.splitlines(keepends=True), 1)
             if n not in drop and (n == 1 or not line.lstrip().startswith("#") or "@CONFIG" in line)]
    text = "".join(lines)
    compile(text, "bootstrap.py", "exec")
    return text


def script(role: str, sha256: str | None = None) -> str:
    """The Fn::Sub source of one role's UserData (the bootstrap with its CONFIG to fill in)."""
    source = compact(BOOTSTRAP.read_text(encoding="utf-8"))
    if "${" in _CONFIG_BLOCK.sub("", source):
        raise ValueError("bootstrap.py must not contain ${ outside its CONFIG block (Fn::Sub would take it)")
    config = _CONFIG.format(role=role, signal=SIGNAL_RESOURCE[role], version=__version__,
                            sha256=sha256 or current().sha256)
    return _CONFIG_BLOCK.sub(lambda _: config, source, count=1)


def user_data(role: str, p: Inputs, storage: Storage) -> Base64:
    """Base64(Sub(script)) with the EFS id only when the stack has a file system."""
    c, fs = p.cond, storage.file_system
    efs_id = If(c.has_efs, If(c.create_efs, Ref(fs), p.ref("EfsFileSystemId")), "")
    return Base64(Sub(script(role), EfsId=efs_id))


def add_agent(t: Template) -> cloudformation.WaitConditionHandle:
    """The resource whose Metadata carries the agent wheel (and does nothing else: a wait
    condition handle is free and has no properties). Nodes read it with GetTemplate."""
    bundle = current()
    return t.add_resource(cloudformation.WaitConditionHandle(AGENT_RESOURCE, Metadata={"cfn-chainermn": {
        "Comment": "The node agent: a py3-none-any wheel, xz-compressed, base64; nodes check its sha256.",
        "Version": __version__, "Sha256": bundle.sha256, "File": bundle.filename, "Wheel": bundle.encoded()}}))


def substitute(text: str, values: Mapping[str, str] = SAMPLE_VALUES) -> str:
    """What Fn::Sub would produce: ${Name} from `values`, ${!x} as ${x}. For tests and docs."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        return "${" + name[1:] + "}" if name.startswith("!") else values[name]

    return re.sub(r"\$\{([^}]*)\}", repl, text)

