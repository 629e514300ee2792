"""The shared file system's mount point rule, as a check with its reasons and as one pattern.

The mount point is a folder of its own: a top-level folder the OS does not make (/efs, /shared,
/data), or one inside OPEN_FOLDERS (/mnt/efs, /srv/nfs, /media/x). Refused: "/", the system's
top-level folders, and anything below SYSTEM_TREES (whose contents root's software makes, reads
and owns) or /home (users' homes). The agent hands the mount point to the cluster user, so one on
root's own path would let that user plant what root reads: /var/lib/cfn-chainermn/idle.json,
/opt/cfn-chainermn's code, /etc/cfn-chainermn/agent.json, /root/.ssh, /var/spool/cron (review 4,
finding 4). Parts are letters, digits, ".", "_" and "-", never "." or "..", joined by single
slashes. mount_point_problem() says why a path breaks the rule and mount_point_pattern() is the
same rule as the template's AllowedPattern (config validation uses the first, the console the
second; the template tests hold them equal).
"""

from __future__ import annotations

import re

# Root's software's own trees: the agent's (/opt/cfn-chainermn, /etc/cfn-chainermn,
# /var/lib/cfn-chainermn, /var/log/cfn-chainermn), the EFA installer's /opt/amazon, a DLAMI's /opt/conda,
# root's home, and all of /var (lib, log, spool, cache; /var/run and /var/lock are /run's, /var/tmp and
# /var/crash writable by every user like /tmp). Refused here by name, before a stack exists; the agent
# also walks the path on the node and refuses any folder above the mount point that is not root's alone
# (node/mount_path.py), such as an image's /var/spool/samba (1777).
SYSTEM_TREES = ("bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "opt", "proc", "root", "run",
                "sbin", "snap", "sys", "tmp", "usr", "var")
# Users' homes: a mount there hides one (the cluster user's ~/.ssh the agent wrote, or an image user's
# such as ubuntu or ec2-user, who can sudo) and hands it to the cluster user, who could add their key to it.
HOMES = "home"
OPEN_FOLDERS = ("media", "mnt", "srv")  # refused themselves, a folder inside them is fine
MOUNT_POINT_MAX = 101
_MOUNT_PART = "[A-Za-z0-9._-]+"
_MOUNT_FIX = "give a folder of its own such as /efs or /mnt/efs"


def mount_point_problem(path: str) -> str | None:
    """Why `path` cannot be the shared file system's mount point (None when it can); see SYSTEM_TREES."""
    if (len(path) > MOUNT_POINT_MAX or not path.startswith("/")
            or not re.fullmatch(r"(/[A-Za-z0-9._-]*)+", path)):
        return (f"{path!r} is not usable; give an absolute path of at most {MOUNT_POINT_MAX} characters, "
                "made of letters, digits, '.', '_' and '-', such as /efs or /mnt/efs")
    parts = path.split("/")[1:]
    top = parts[0]
    if path == "/" or (len(parts) == 1 and top in (*OPEN_FOLDERS, *SYSTEM_TREES, HOMES)):
        return f"{path} is a system folder; {_MOUNT_FIX}"
    if any(part in ("", ".", "..") for part in parts):
        return f"{path!r} has an empty, '.' or '..' part; write the folder plainly, such as /efs or /mnt/efs"
    if top in SYSTEM_TREES:
        return (f"{path} is inside the system folder /{top}, root's software's own; {_MOUNT_FIX} (or one inside "
                f"{', '.join('/' + f for f in OPEN_FOLDERS)})")
    if top == HOMES:
        return (f"{path} is in /home, where the mount would hide a user's home (the cluster user's ~/.ssh, or "
                f"an image user's who can sudo) and hand it to the cluster user; {_MOUNT_FIX}")
    return None


def mount_point_pattern() -> str:
    """mount_point_problem's rule as one regular expression (Java and Python agree on it), for the template."""
    trees, folders = "|".join((*SYSTEM_TREES, HOMES)), "|".join(OPEN_FOLDERS)
    part = rf"(?!\.\.?(?:/|$)){_MOUNT_PART}"  # not "." or ".."
    return rf"^(?!/(?:{trees})(?:/|$))(?!/(?:{folders})$)(?:/{part})+$"
