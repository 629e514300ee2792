"""UserData: make sure the node agent is installed, then hand the node over to it.

Everything that can fail in an interesting way (identity, keys, EFS, hostfile, signalling)
lives in the agent, in Python, with tests. The shell part only installs the agent and, when
that fails, signals FAILURE itself so the stack fails fast with a reason instead of timing out.
Template values reach the shell inside single quotes; the parameters' AllowedPatterns forbid
quotes and shell metacharacters in them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from troposphere import Base64, If, Sub

from cfn_chainermn.names import MASTER_RESOURCE, WORKER_GROUP_RESOURCE
from cfn_chainermn.template.parameters import Inputs
from cfn_chainermn.template.storage import Storage

# ${Name} is filled by Fn::Sub; ${!x} reaches bash as ${x}.
SCRIPT = """\
#!/bin/bash
# cfn-chainermn node bootstrap: install the agent when missing, then run it.
set -euo pipefail
export PATH="/usr/local/bin:$PATH" PIP_BREAK_SYSTEM_PACKAGES=1
pkg='${AgentPackage}' index='${AgentIndexUrl}' wheel='${AgentWheelS3Path}'
fail() {  # the agent never started: tell CloudFormation now rather than time out
  set +e  # best effort: a failed IMDS call must not end the script before the signal is tried
  tok=$(curl -sfS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)
  iid=$(curl -sfS -H "X-aws-ec2-metadata-token: $tok" http://169.254.169.254/latest/meta-data/instance-id)
  aws cloudformation signal-resource --region '${AWS::Region}' --stack-name '${AWS::StackName}' \\
    --logical-resource-id '@SIGNAL@' --unique-id "$iid" --status FAILURE
  exit 1
}
pip_install() {  # Deep Learning AMIs ship pip; a plain Ubuntu image may not
  { python3 -m pip --version >/dev/null 2>&1 || { apt-get -o DPkg::Lock::Timeout=600 update -q &&
    apt-get -o DPkg::Lock::Timeout=600 install -y -q python3-pip; }; } && python3 -m pip install "$@"
}
if [ -n "$wheel" ]; then
  { aws s3 cp "s3://$wheel" /tmp/ && pip_install "/tmp/${!wheel##*/}"; } || fail
elif ! cfn-chainermn --version 2>/dev/null | grep -qxF "cfn-chainermn, version ${!pkg#*==}"; then
  set --
  [ -z "$index" ] || set -- --index-url "$index"
  pip_install "$@" "$pkg" || fail
fi
exec cfn-chainermn node boot --role @ROLE@ --stack '${AWS::StackName}' --region '${AWS::Region}' \\
  --bucket '${KeyBucket}' --signal-resource '@SIGNAL@' --mount-point '${MountPoint}'${EfsArg}
"""

SIGNAL_RESOURCE = {"master": MASTER_RESOURCE, "worker": WORKER_GROUP_RESOURCE}

# Sample values that stand in for Fn::Sub when the script is checked as plain bash.
SAMPLE_VALUES: Mapping[str, str] = {
    "AgentPackage": "cfn-chainermn==0.1.0",
    "AgentIndexUrl": "",
    "AgentWheelS3Path": "",
    "AWS::Region": "us-east-1",
    "AWS::StackName": "demo",
    "KeyBucket": "demo-keybucket-1a2b3c4d5e6f",
    "MountPoint": "/efs",
    "EfsArg": " --efs-id fs-0123456789abcdef0",
}


def script(role: str) -> str:
    """The Fn::Sub source of one role's script."""
    return SCRIPT.replace("@ROLE@", role).replace("@SIGNAL@", SIGNAL_RESOURCE[role])


def user_data(role: str, p: Inputs, storage: Storage) -> Base64:
    """Base64(Sub(script)) with the EFS flag only when the stack has a file system."""
    c, fs = p.cond, storage.file_system.title
    efs_arg = If(c.has_efs, If(c.create_efs, Sub(f" --efs-id ${{{fs}}}"), Sub(" --efs-id ${EfsFileSystemId}")), "")
    return Base64(Sub(script(role), EfsArg=efs_arg))


def substitute(text: str, values: Mapping[str, str] = SAMPLE_VALUES) -> str:
    """What Fn::Sub would produce: ${Name} from `values`, ${!x} as ${x}. For tests and docs."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        return "${" + name[1:] + "}" if name.startswith("!") else values[name]

    return re.sub(r"\$\{([^}]*)\}", repl, text)
