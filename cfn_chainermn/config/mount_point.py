"""The shared file system's mount point rule, as a check with its reasons and as one pattern.

The mount point is a folder of its own. Refused: "/", the system's top-level folders, and
anything below those whose contents the OS makes and owns (SYSTEM_TREES). A folder inside the
others (SYSTEM_FOLDERS: /mnt/efs, /home/shared, /opt/data) is fine. Parts are letters, digits,
".", "_" and "-", never "." or "..", joined by single slashes. mount_point_problem() says why a
path breaks the rule and mount_point_pattern() is the same rule as the template's AllowedPattern
(config validation uses the first, the console the second; the template tests hold them equal).
"""

from __future__ import annotations

import re

# /var/run and /var/lock are /run's. /var/tmp and /var/crash are writable by every user, like /tmp:
# the cluster user could put a link or a folder of theirs on the mount point's path before a reboot,
# and the agent (root) makes, mounts and hands over the mount point there. Refused here by name, before
# a stack exists; the agent also walks the path on the node and refuses any folder above the mount
# point that is not root's alone (node/mount_path.py), such as an image's /var/spool/samba (1777).
SYSTEM_TREES = ("bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run", "sbin", "snap",
                "sys", "tmp", "usr", "var/run", "var/lock", "var/tmp", "var/crash")
# The cluster user's home: EFS mounted there would hide the ~/.ssh the agent wrote before.
CLUSTER_HOME = "home/chainer"
SYSTEM_FOLDERS = ("home", "media", "mnt", "opt", "root", "srv", "var")
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
    if path == "/" or (len(parts) == 1 and top in SYSTEM_FOLDERS + SYSTEM_TREES):
        return f"{path} is a system folder; {_MOUNT_FIX}"
    if any(part in ("", ".", "..") for part in parts):
        return f"{path!r} has an empty, '.' or '..' part; write the folder plainly, such as /efs or /mnt/efs"
    inside = [t for t in SYSTEM_TREES if path == f"/{t}" or path.startswith(f"/{t}/")]
    if inside:
        return (f"{path} is inside the system folder /{inside[0]}; {_MOUNT_FIX} (or one inside "
                f"{', '.join('/' + f for f in SYSTEM_FOLDERS)})")
    if path == f"/{CLUSTER_HOME}" or path.startswith(f"/{CLUSTER_HOME}/"):
        return f"{path} is in the cluster user's home, whose ~/.ssh the mount would hide; {_MOUNT_FIX}"
    return None


def mount_point_pattern() -> str:
    """mount_point_problem's rule as one regular expression (Java and Python agree on it), for the template."""
    trees, folders = "|".join((*SYSTEM_TREES, CLUSTER_HOME)), "|".join(SYSTEM_FOLDERS)
    part = rf"(?!\.\.?(?:/|$)){_MOUNT_PART}"  # not "." or ".."
    return rf"^(?!/(?:{trees})(?:/|$))(?!/(?:{folders})$)(?:/{part})+$"
