"""procs: sshd is recognised under the title it gives itself, so `local down --all` finds clusters."""

from __future__ import annotations

from cfn_chainermn.local.procs import Proc, _is_sshd


def _p(cmdline: str) -> Proc:
    return Proc(pid=10, ppid=1, uid=0, cmdline=cmdline, cwd="/")


def test_sshd_titles() -> None:
    assert _is_sshd(_p("sshd: /usr/sbin/sshd -f /s/nodes/master/sshd_config -E /s/log [listener] 0 of 10-100"))
    assert _is_sshd(_p("/usr/sbin/sshd -f /s/nodes/master/sshd_config"))
    assert not _is_sshd(_p("sshd-session: chainer [priv]"))
    assert not _is_sshd(_p("python -m sshd_tool"))
    assert not _is_sshd(_p(""))
