#!/bin/bash
# cfn-chainermn node bootstrap: install the agent when missing, then run it.
set -euo pipefail
export PATH="/usr/local/bin:$PATH" PIP_BREAK_SYSTEM_PACKAGES=1
pkg='cfn-chainermn==0.1.0' index='' wheel=''
fail() {  # the agent never started: tell CloudFormation now rather than time out
  set +e  # best effort: a failed IMDS call must not end the script before the signal is tried
  tok=$(curl -sfS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)
  iid=$(curl -sfS -H "X-aws-ec2-metadata-token: $tok" http://169.254.169.254/latest/meta-data/instance-id)
  aws cloudformation signal-resource --region 'us-east-1' --stack-name 'demo' \
    --logical-resource-id 'ClusterMaster' --unique-id "$iid" --status FAILURE
  exit 1
}
pip_install() {  # Deep Learning AMIs ship pip; a plain Ubuntu image may not
  { python3 -m pip --version >/dev/null 2>&1 || { apt-get -o DPkg::Lock::Timeout=600 update -q &&
    apt-get -o DPkg::Lock::Timeout=600 install -y -q python3-pip; }; } && python3 -m pip install "$@"
}
if [ -n "$wheel" ]; then
  { aws s3 cp "s3://$wheel" /tmp/ && pip_install "/tmp/${wheel##*/}"; } || fail
elif ! cfn-chainermn --version 2>/dev/null | grep -qxF "cfn-chainermn, version ${pkg#*==}"; then
  set --
  [ -z "$index" ] || set -- --index-url "$index"
  pip_install "$@" "$pkg" || fail
fi
exec cfn-chainermn node boot --role master --stack 'demo' --region 'us-east-1' \
  --bucket 'demo-keybucket-1a2b3c4d5e6f' --signal-resource 'ClusterMaster' --mount-point '/efs' --efs-id fs-0123456789abcdef0
