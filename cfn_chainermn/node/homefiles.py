"""Files in the cluster user's home, written by root without ever following a link.

The agent runs as root (boot, and `node refresh` every 30 s) while jobs run as the cluster user,
who owns the home and can swap anything in it for a symbolic link at any moment. A path-based
write (or chown, chmod, read) would then act on the link's target: `~/.ssh -> /etc/update-motd.d`
gave the user a file of their own there, `~/.ssh/authorized_keys -> /etc/shadow` copied root's
secrets into a user-owned file. So every folder is opened from the home down with O_NOFOLLOW |
O_DIRECTORY, files are created relative to that folder's descriptor (O_EXCL | O_NOFOLLOW), moved
into place with renameat, and owner and mode are set on the descriptor (fchown, fchmod).

A link, or anything that is not a plain folder or a plain file with one name, where the agent
expects one is REFUSED: nothing is followed, replaced or deleted (it may be the user's own
setup, such as ~/.ssh on the shared file system), and the step fails with a message naming the
path, which the agent logs and `node status` shows. Only the user's own cluster suffers.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from cfn_chainermn.errors import AgentError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # a FIFO must not hang root
MAX_READ = 4 << 20  # a hostfile of thousands of nodes, an authorized_keys, a .bashrc: far below this
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class HomeFiles:
    """Reads and atomic writes of `home`/REL (REL like ".ssh/known_hosts"), owned by `owner`
    ((-1, -1): keep root's). `home` itself must not be a link either."""

    def __init__(self, home: Path, owner: tuple[int, int] = (-1, -1)) -> None:
        self.home = home
        self.owner = owner if owner[0] >= 0 else None

    def _refuse(self, rel: str, what: str) -> AgentError:
        return AgentError(f"~/{rel} in {self.home} is {what}: refused, not followed (the agent writes the "
                          "cluster user's files only through plain folders and files; remove it to let the "
                          "agent recreate it)")

    def _kind(self, dir_fd: int, name: str) -> str:
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            return "not a plain folder"
        return "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a plain folder"

    @contextmanager
    def folder(self, rel: str, *, create: bool = True, mode: int = 0o755,
               enforce: bool = False) -> Iterator[int | None]:
        """A descriptor of home/REL ("" for the home), each component opened without following
        links; missing ones are made (owned by the user) when `create`, else None is yielded.
        `enforce` sets the last folder's owner and mode each time (~/.ssh)."""
        try:
            fd = os.open(self.home, _DIR)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise AgentError(f"home {self.home} is a symbolic link or not a folder: refused") from exc
            raise AgentError(f"cannot open home {self.home}: {exc.strerror}") from exc
        try:
            parts, done = [p for p in rel.split("/") if p], []
            for name in parts:
                done.append(name)
                try:
                    nxt = os.open(name, _DIR, dir_fd=fd)
                    made = False
                except FileNotFoundError:
                    if not create:
                        yield None
                        return
                    os.mkdir(name, mode, dir_fd=fd)
                    nxt, made = self._open_dir(fd, name, "/".join(done)), True
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        raise self._refuse("/".join(done), self._kind(fd, name)) from exc
                    raise
                os.close(fd)
                fd = nxt
                if made or (enforce and len(done) == len(parts)):
                    self._own(fd, mode)
            yield fd
        finally:
            os.close(fd)

    def _open_dir(self, parent: int, name: str, rel: str) -> int:
        try:
            return os.open(name, _DIR, dir_fd=parent)
        except OSError as exc:  # swapped for a link between mkdir and open
            raise self._refuse(rel, self._kind(parent, name)) from exc

    def _own(self, fd: int, mode: int) -> None:
        if self.owner is not None:
            os.fchown(fd, *self.owner)
        os.fchmod(fd, mode)

    def _read_at(self, dir_fd: int, name: str, rel: str, *, whole: bool = True
                 ) -> tuple[bytes, os.stat_result] | None:
        """The file's bytes and status, None when missing; a link, a non-file or a file with
        other names (a hard link to someone else's file) is refused. A file over MAX_READ (the
        user can grow their own files: root must not load 50 GB) is refused, or with
        `whole=False` (a write comparing old and new) given as None: nothing to keep, it is replaced."""
        try:
            fd = os.open(name, _READ, dir_fd=dir_fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self._refuse(rel, "a symbolic link") from exc
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise self._refuse(rel, "not a plain file")
            if st.st_nlink != 1:
                raise self._refuse(rel, f"a file with {st.st_nlink} names (a hard link)")
            data = b""
            while st.st_size <= MAX_READ and len(data) <= MAX_READ and (
                    chunk := os.read(fd, MAX_READ + 1 - len(data))):
                data += chunk
            if st.st_size > MAX_READ or len(data) > MAX_READ:
                if not whole:
                    return None
                raise self._refuse(rel, f"larger than {MAX_READ} bytes")
            return data, st
        finally:
            os.close(fd)

    def read(self, rel: str) -> bytes | None:
        """home/REL's bytes, None when it (or a folder on the way) does not exist."""
        folder, _, name = rel.rpartition("/")
        with self.folder(folder, create=False) as fd:
            if fd is None:
                return None
            found = self._read_at(fd, name, rel)
            return None if found is None else found[0]

    def read_text(self, rel: str) -> str:
        """home/REL as text, "" when missing."""
        data = self.read(rel)
        return "" if data is None else data.decode("utf-8")

    def write(self, rel: str, text: str | bytes, mode: int, *, folder_mode: int = 0o755) -> bool:
        """Replace home/REL in one rename (readers never see a partial file); False when it
        already holds these bytes, mode and owner. Missing folders are made with `folder_mode`."""
        data = text.encode("utf-8") if isinstance(text, str) else text
        folder, _, name = rel.rpartition("/")
        with self.folder(folder, mode=folder_mode) as dir_fd:
            assert dir_fd is not None  # create=True
            old = self._read_at(dir_fd, name, rel, whole=False)
            if old is not None and old[0] == data and stat.S_IMODE(old[1].st_mode) == mode and (
                    self.owner is None or (old[1].st_uid, old[1].st_gid) == self.owner):
                return False
            tmp = f".{name}.{secrets.token_hex(4)}"
            fd = os.open(tmp, _NEW, 0o600, dir_fd=dir_fd)
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                    f.flush()
                    self._own(f.fileno(), mode)
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with suppress(OSError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise
        return True

