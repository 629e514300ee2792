"""Where the files the local cluster's user must reach live: beside the caller, or outside a private folder.

As root, a local cluster runs as a user of its own, who must run the project venv's python and
reach the state folder. A checkout under /root (mode 700, the default) is closed to that user, so
there the venv and the default state folders live in a root-owned folder outside it,
/var/lib/cfn-chainermn/<hash of the folder's path>/, and `.venv` links to the venv.

The cluster user needs the venv's python and its site-packages (chainer, mpi4py, ...), never the
package source: the editable install's .pth entry (the checkout) is skipped by `site` where that
user cannot reach it, and the node agent, which does import the package, runs as root.

Nothing here trusts a folder it did not make: each one is owned by the caller and writable by
no one else, checked before use. `python -m cfn_chainermn.local.places` serves the Makefile
(standard library only, so the system python runs it before any venv exists).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import sys
from pathlib import Path

from cfn_chainermn.errors import ConfigError

BASE = Path("/var/lib/cfn-chainermn")
DEFAULT_STATE_DIR = ".local-cluster"


def unsearchable(path: Path) -> Path | None:
    """The first folder of `path` (or above it) that other users cannot search, if any."""
    path = Path(os.path.abspath(path))
    for folder in [path, *path.parents]:
        try:
            if not os.stat(folder).st_mode & 0o001:
                return folder
        except OSError:
            continue  # not made yet: the folder that will hold it decides
    return None


def moved(folder: Path) -> bool:
    """True when, as root, what the cluster user needs cannot stay in `folder`."""
    return os.geteuid() == 0 and unsearchable(folder.resolve()) is not None


def home_of(folder: Path) -> Path:
    """The outside folder that stands in for `folder` (one per checkout or working folder)."""
    return BASE / hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]


def place(folder: Path, name: str, *, create: bool = False) -> Path:
    """`folder/name`, or where it lives instead when `folder` is closed to the cluster user.

    `.venv` -> <home>/venv, `.demo/cluster` -> <home>/demo/cluster. `create` makes (and checks)
    the outside folder, never `name` itself.
    """
    if not moved(folder):
        return folder / name
    home = home_of(folder)
    if create:
        make_private(home)
    return home / name.lstrip(".")


def default_state_dir(*, create: bool = False) -> Path:
    """`local up`'s folder when none is given: .local-cluster here, unless this folder is closed."""
    if not moved(Path.cwd()):
        return Path(DEFAULT_STATE_DIR)
    return place(Path.cwd(), DEFAULT_STATE_DIR, create=create)


def interpreter(python: str) -> str:
    """`python` with its folder's links resolved (a `.venv` link to the venv outside), not its own:
    a venv's bin/python links to the system one, and resolving it would leave the venv."""
    path = Path(os.path.abspath(python))
    return str(path.parent.resolve() / path.name)


def check_private(folder: Path) -> None:
    """Refuse a folder someone else could have planted or could change under us."""
    try:
        st = os.lstat(folder)
    except OSError as exc:
        raise ConfigError(f"cannot use {folder}: {exc.strerror or exc}") from exc
    fix = f"Remove it (`rm -rf {folder}`) and run again"
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{folder} is not a folder (a link or a file); {fix}")
    if st.st_uid != os.geteuid():
        raise ConfigError(f"{folder} belongs to uid {st.st_uid}, not to you (uid {os.geteuid()}); {fix}")
    if st.st_mode & 0o022:
        raise ConfigError(f"{folder} is writable by others (mode {oct(st.st_mode & 0o777)}); {fix}")


def make_private(folder: Path) -> None:
    """BASE and `folder` below it: made 0755 where missing, each checked to be ours alone."""
    for path in (BASE, folder):
        if not path.exists() and not path.is_symlink():
            try:
                path.mkdir(mode=0o755)
                os.chmod(path, 0o755)  # not the umask: the cluster user must search it
            except FileExistsError:
                pass  # someone was faster: checked below like any existing folder
            except OSError as exc:
                raise ConfigError(f"cannot make {path}: {exc.strerror or exc}") from exc
        check_private(path)


def link_venv(venv: Path) -> str:
    """Point `venv` (.venv in a closed checkout) at the checked venv folder outside it."""
    target = place(venv.parent, venv.name, create=True)
    if target == venv:
        return ""
    if not target.exists():
        target.mkdir(mode=0o755)
        os.chmod(target, 0o755)
    check_private(target)
    if venv.is_symlink() and venv.resolve() == target:
        return ""
    note = ""
    if venv.is_dir() and not venv.is_symlink():  # made here before: its python is out of the cluster's reach
        import shutil  # here: it imports bz2 and lzma, ~3 ms of every job command

        shutil.rmtree(venv)
        note = f"removed {venv}, a venv the local cluster's user cannot reach; "
    elif venv.exists() or venv.is_symlink():
        venv.unlink()
    venv.symlink_to(target)
    blocked = unsearchable(venv.parent.resolve())
    return (f"{note}the venv lives in {target} and {venv} links to it: {blocked} is not searchable by "
            "other users, and the local cluster's user runs the venv's python")


def remove_home(folder: Path) -> str:
    """`make clean`: the outside folder of `folder` (venv, default state), when it is ours."""
    home = home_of(folder)
    if not home.exists() and not home.is_symlink():
        return ""
    check_private(home)
    import shutil  # here: it imports bz2 and lzma, ~3 ms of every job command

    shutil.rmtree(home)
    with contextlib.suppress(OSError):
        BASE.rmdir()  # the last one out
    return f"removed {home}"


def main(argv: list[str]) -> int:
    """`where NAME` (the path, made nowhere), `venv NAME` (make and link), `remove` (make clean)."""
    cwd = Path.cwd()
    try:
        if len(argv) == 2 and argv[0] == "where":
            print(place(cwd, argv[1]) if moved(cwd) else argv[1])
        elif len(argv) == 2 and argv[0] == "venv":
            note = link_venv(cwd / argv[1])
            if note:
                print(note, file=sys.stderr)
        elif argv == ["remove"]:
            note = remove_home(cwd)
            if note:
                print(note)
        else:
            print("usage: python -m cfn_chainermn.local.places where NAME | venv NAME | remove", file=sys.stderr)
            return 2
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
