"""Installing the communicator shim into a Chainer environment: two files in site-packages, and a
real `import chainermn` there gets its removed names substituted."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from cfn_chainermn.jobs import compat_install

SITE = sysconfig.get_paths()["purelib"]


def test_files_are_the_shim_and_a_pth_line_that_installs_it() -> None:
    files = compat_install.files()
    assert files["cfnmn_chainermn_compat.py"] == compat_install.SOURCE.read_text()
    assert files["cfnmn-chainermn-compat.pth"] == "import cfnmn_chainermn_compat; cfnmn_chainermn_compat.install()\n"


def test_install_writes_readable_files_and_replaces_a_link_without_following_it(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    site = tmp_path / "site"
    site.mkdir()
    (site / "cfnmn_chainermn_compat.py").symlink_to(victim)
    written = compat_install.install(site)
    assert sorted(p.name for p in written) == ["cfnmn-chainermn-compat.pth", "cfnmn_chainermn_compat.py"]
    assert victim.read_text() == "keep\n"
    for path in written:
        assert not path.is_symlink() and path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in site.iterdir()) == sorted(p.name for p in written)  # no temp files left


def test_install_into_another_interpreter_byte_compiles_with_it(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The boot install's case: the Chainer venv is another interpreter's than the running one."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    assert compat_install.main(["--python", python]) == 0
    site = compat_install.site_packages(python)
    assert site.is_relative_to(tmp_path / "venv")
    assert (site / "cfnmn-chainermn-compat.pth").is_file()
    assert list((site / "__pycache__").glob("cfnmn_chainermn_compat.*.pyc"))
    assert capsys.readouterr().err == f"installed {site / 'cfnmn_chainermn_compat.py'}\n" \
                                      f"installed {site / 'cfnmn-chainermn-compat.pth'}\n"


@pytest.mark.parametrize("python,why", [("/nonexistent/python", "No such file or directory"), ("/bin/false", "exit 1")])
def test_an_interpreter_that_cannot_take_it_is_one_line_exit_2(python: str, why: str,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert compat_install.main(["--python", python]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --python {python}: cannot install into its site-packages ({why}); give the interpreter "
                   "of the environment that has Chainer, run by a user who may write there\n")


@pytest.mark.slow
def test_a_real_chainermn_gets_naive_for_hierarchical_here(tmp_path: Path) -> None:
    """Without CuPy, every removed name runs as naive; the warning is the only thing on stderr."""
    pytest.importorskip("chainermn")
    compat_install.install(tmp_path)
    # -S: the venv's own .pth files (where `make install` put the shim too) are not read, so only
    # the copy installed here can be doing the work
    code = f"""
import sys, site
sys.path.append({SITE!r})
site.addsitedir({str(tmp_path)!r})
import warnings; warnings.simplefilter("ignore")
import chainermn
for name in ("hierarchical", "two_dimensional", "single_node", "naive"):
    comm = chainermn.create_communicator(name)
    print(name, type(comm).__name__, comm.allreduce_obj(comm.rank + 2))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["OMPI_MCA_rtc"] = "^hwloc"
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env, timeout=120,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [f"{name} NaiveCommunicator 2" for name in
                                        ("hierarchical", "two_dimensional", "single_node", "naive")]
    assert proc.stderr.splitlines() == [
        f"cfn-chainermn: ChainerMN communicator '{name}' was removed in Chainer 7; using 'naive' instead "
        "(no usable GPU: CuPy missing or no CUDA device)"
        for name in ("hierarchical", "two_dimensional", "single_node")]
