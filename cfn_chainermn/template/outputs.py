"""Stack outputs: what `stack create` prints and what the CLI reads back to reach the cluster.

ClusterMasterPublicDNS comes first and keeps the 2018 reference's name; only the EFS id is
conditional, because only the file system may be absent.
"""

from __future__ import annotations

from troposphere import GetAtt, Output, Ref, Sub, Template

from cfn_chainermn.names import (
    OUT_BUCKET,
    OUT_EFS_ID,
    OUT_MASTER_DNS,
    OUT_MASTER_INSTANCE_ID,
    OUT_MASTER_PRIVATE_IP,
    OUT_MOUNT_POINT,
    OUT_SSH_COMMAND,
    OUT_WORKER_GROUP,
)
from cfn_chainermn.template.compute import Nodes
from cfn_chainermn.template.parameters import Inputs
from cfn_chainermn.template.storage import Storage


def add_outputs(t: Template, p: Inputs, storage: Storage, nodes: Nodes) -> None:
    master = nodes.master
    t.add_output([
        Output(OUT_MASTER_DNS, Description="Public DNS name of the master; log in as chainer",
               Value=GetAtt(master, "PublicDnsName")),
        Output(OUT_MASTER_PRIVATE_IP, Description="Private IP of the master inside the cluster network",
               Value=GetAtt(master, "PrivateIp")),
        Output(OUT_MASTER_INSTANCE_ID, Description="Instance id of the master", Value=Ref(master)),
        Output(OUT_BUCKET, Description="S3 bucket with the cluster key, node records and agent logs",
               Value=Ref(storage.bucket)),
        Output(OUT_EFS_ID, Condition=p.cond.has_efs, Description="Shared EFS file system", Value=storage.efs_id),
        Output(OUT_WORKER_GROUP, Description="Auto Scaling group of the workers",
               Value=Ref(nodes.workers)),
        Output(OUT_MOUNT_POINT, Description="Shared directory on every node", Value=p.ref("MountPoint")),
        Output(OUT_SSH_COMMAND, Description="Log in to the master",
               Value=Sub(f"ssh -i ${{KeyName}}.pem chainer@${{{master.title}.PublicDnsName}}")),
    ])
