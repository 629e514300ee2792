"""Names shared by the template, the node agent and the CLI: logical ids, tags, outputs, bucket layout.

One module so the three can never disagree, and light enough for the node agent and `job submit`
to import (no troposphere, no boto3).
"""

from __future__ import annotations

# A cluster's NAME: a CloudFormation stack name, checked by `stack create` (the settings table)
# and by every command that takes NAME before it looks anything up.
STACK_NAME_PATTERN = r"[A-Za-z][-A-Za-z0-9]{0,127}"
STACK_NAME_RULE = "use 1-128 letters, digits and hyphens, starting with a letter"

# Logical ids that the node agent signals and the CLI reports on.
MASTER_RESOURCE = "ClusterMaster"
AGENT_RESOURCE = "NodeAgent"  # its Metadata carries the agent wheel (template/userdata.py)
WORKER_GROUP_RESOURCE = "WorkerGroup"

# Tags the template puts on every instance; discovery and `stack list` key on them.
CLUSTER_TAG = "cfn-chainermn:cluster"
ROLE_TAG = "cfn-chainermn:role"

# Stack outputs (ClusterMasterPublicDNS keeps the 2018 reference's name).
OUT_MASTER_DNS = "ClusterMasterPublicDNS"
OUT_MASTER_PRIVATE_IP = "ClusterMasterPrivateIP"
OUT_MASTER_INSTANCE_ID = "ClusterMasterInstanceId"
OUT_BUCKET = "KeyBucketName"
OUT_EFS_ID = "EfsFileSystemId"
OUT_WORKER_GROUP = "WorkerGroupName"
OUT_MOUNT_POINT = "MountPoint"
# Where the shared file system is mounted unless `efs.mount_point` says otherwise: the settings
# table's default, the node agent's, and what a stack without the output is read as.
DEFAULT_MOUNT_POINT = "/efs"
OUT_SSH_COMMAND = "SshCommand"
# Idle shutdown (node/idle.py): the role CloudFormation assumes when the master deletes its own
# stack, and its ARN as an output the master reads with DescribeStacks.
SHUTDOWN_ROLE_RESOURCE = "ShutdownRole"
OUT_SHUTDOWN_ROLE = "ShutdownRoleArn"
SHUTDOWN_POLICY = "cfn-chainermn-shutdown"  # its inline policy, which `stack delete` removes with it
# The role's tag naming its stack's id: `stack delete` finds the role a deleted stack left by it.
SHUTDOWN_ROLE_STACK_TAG = "cfn-chainermn:stack-id"

# Layout of the key bucket, shared by the node agent (writer) and the CLI (reader).
KEY_PREFIX = "cluster-key/"  # id_ed25519, id_ed25519.pub: written by the master only
# The cluster's private key: the one secret object, which the bucket policy lets only the node
# roles read (the CLI never reads it; it reads the public MASTER_HOST_KEY beside it).
CLUSTER_PRIVATE_KEY = KEY_PREFIX + "id_ed25519"
CLUSTER_PUBLIC_KEY = KEY_PREFIX + "id_ed25519.pub"  # its public half, which every node authorizes
# The master's sshd host key, published by the master under the prefix only it may write: the
# CLI pins the master from this object, never from nodes/ (which every node can write).
MASTER_HOST_KEY = KEY_PREFIX + "master_host_ed25519.pub"
# The master's discovery (live nodes, readiness, host keys), published for the workers to read
# with one conditional GET per refresh instead of each discovering the cluster themselves. Under
# cluster-key/ so that, like the pinned host key, no worker can write what the others trust.
CLUSTER_VIEW = KEY_PREFIX + "cluster-view.json"
# Idle time and deadline as the master counts them (node/idle.py), for `stack status` to show;
# under cluster-key/ so that no worker can write what the CLI reports.
IDLE_STATUS = KEY_PREFIX + "idle.json"
NODES_PREFIX = "nodes/"  # nodes/<instance-id>/host_ed25519.pub and nodes/<instance-id>/ready
LOGS_PREFIX = "logs/"  # logs/<instance-id>/agent.log
# The Chainer stack's wheelhouse (node/chainer_stack.py): the master builds and writes it, every
# node reads it; the manifest (wheel names and sha256s) is written last.
CHAINER_STACK_PREFIX = "chainer-stack/"
CHAINER_STACK_MANIFEST = CHAINER_STACK_PREFIX + "manifest.json"
