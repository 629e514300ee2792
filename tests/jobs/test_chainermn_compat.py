"""The communicator shim: Chainer 7's removed names become pure_nccl on a GPU, naive without one,
with one warning line each; every other name and argument goes through untouched."""

from __future__ import annotations

import io
import sys
import types
from typing import Any

import pytest

from cfn_chainermn.jobs import chainermn_compat as compat


def GPU() -> bool:
    return True


def CPU() -> bool:
    return False


def GONE(name: str) -> bool:
    return False  # Chainer 7: no <name>_communicator module any more


@pytest.mark.parametrize("name", compat.REMOVED)
def test_removed_names_map_to_pure_nccl_on_gpu_and_naive_without(name: str) -> None:
    assert compat.substitute(name, GPU, GONE) == "pure_nccl"
    assert compat.substitute(name, CPU, GONE) == "naive"


@pytest.mark.parametrize("name", ["pure_nccl", "naive", "flat", "non_cuda_aware", "dummy", "bogus", "", None, 3])
def test_other_names_are_passed_on(name: object) -> None:
    assert compat.substitute(name, GPU, GONE) is None
    assert compat.substitute(name, CPU, GONE) is None


def test_an_older_chainermn_that_still_has_the_name_keeps_it() -> None:
    assert compat.substitute("hierarchical", GPU, lambda name: True) is None


def test_chainer_7_has_none_of_the_removed_modules() -> None:
    pytest.importorskip("chainermn")
    assert [compat.still_there(name) for name in compat.REMOVED] == [False, False, False]
    assert compat.still_there("pure_nccl")  # the probe finds what is there


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls.append((args, kwargs))
        return "comm"


@pytest.mark.parametrize("has_gpu,new", [(GPU, "pure_nccl"), (CPU, "naive")])
def test_wrapper_substitutes_and_says_so_in_one_line(has_gpu: Any, new: str) -> None:
    create, err = Recorder(), io.StringIO()
    wrapped = compat.wrap(create, has_gpu, GONE, err)
    assert wrapped("hierarchical", "mpi-comm", allreduce_grad_dtype="float16") == "comm"
    assert wrapped(communicator_name="two_dimensional") == "comm"
    assert create.calls == [((new, "mpi-comm"), {"allreduce_grad_dtype": "float16"}),
                            ((), {"communicator_name": new})]
    lines = err.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"cfn-chainermn: ChainerMN communicator 'hierarchical' was removed in Chainer 7; "
                               f"using '{new}' instead")
    assert ("no usable GPU" in lines[0]) == (new == "naive")


def test_wrapper_leaves_everything_else_alone() -> None:
    create, err = Recorder(), io.StringIO()
    wrapped = compat.wrap(create, GPU, GONE, err)
    wrapped()
    wrapped("naive")
    wrapped("bogus", mpi_comm=None)
    assert create.calls == [((), {}), (("naive",), {}), (("bogus",), {"mpi_comm": None})]
    assert err.getvalue() == ""
    assert wrapped.__wrapped__ is create  # type: ignore[attr-defined]
    assert compat.wrap(wrapped, GPU, GONE, err) is wrapped  # never wrapped twice


def test_gpu_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # CuPy not installed
    assert compat.gpu_usable() is False

    def fake_cupy(count: Any) -> types.ModuleType:
        def get_device_count() -> int:
            if isinstance(count, Exception):
                raise count
            return int(count)
        runtime = types.SimpleNamespace(getDeviceCount=get_device_count)
        module = types.ModuleType("cupy")
        module.cuda = types.SimpleNamespace(runtime=runtime)  # type: ignore[attr-defined]
        return module

    for count, usable in ((2, True), (0, False), (RuntimeError("cudaErrorInsufficientDriver"), False)):
        monkeypatch.setitem(sys.modules, "cupy", fake_cupy(count))
        assert compat.gpu_usable() is usable, count


def test_install_waits_for_the_import_and_adds_one_finder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path if type(f).__name__ != "Finder"])
    monkeypatch.delitem(sys.modules, compat.TARGET, raising=False)
    compat.install()
    compat.install()
    assert [f for f in sys.meta_path if isinstance(f, compat.Finder)] == [sys.meta_path[0]]
    assert compat.Finder().find_spec("json") is None  # it answers for its one module only


def test_install_after_chainermn_patches_both_names(monkeypatch: pytest.MonkeyPatch) -> None:
    create = Recorder()
    communicators = types.SimpleNamespace(create_communicator=create)
    package = types.SimpleNamespace(create_communicator=create)
    monkeypatch.setitem(sys.modules, compat.TARGET, communicators)  # type: ignore[arg-type]
    monkeypatch.setitem(sys.modules, "chainermn", package)  # type: ignore[arg-type]
    before = list(sys.meta_path)
    compat.install()
    assert sys.meta_path == before
    for module in (communicators, package):
        assert getattr(module.create_communicator, compat.MARK) is True
        assert module.create_communicator.__wrapped__ is create


def test_the_finder_wraps_the_loader_and_never_recurses(monkeypatch: pytest.MonkeyPatch) -> None:
    """It asks the finders behind it; one of those asking importlib again gets None from it, not a loop."""
    import importlib.machinery
    import importlib.util

    real = importlib.machinery.ModuleSpec(compat.TARGET, importlib.machinery.SourceFileLoader(compat.TARGET, "x.py"))
    asked: list[str] = []

    class Behind:  # asks importlib again, as some finders do (itself answering only the outer call)
        def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
            asked.append(fullname)
            if len(asked) > 1:
                return None
            assert importlib.util._find_spec(fullname, path) is real  # type: ignore[attr-defined]  # from Plain
            return real

    class Plain:
        def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
            return real if fullname == compat.TARGET else None

    finder = compat.Finder()
    monkeypatch.setattr(sys, "meta_path", [finder, Behind(), Plain()])
    spec = finder.find_spec(compat.TARGET)
    assert asked == [compat.TARGET] * 2 and spec is real  # the Finder was not asked twice
    assert isinstance(spec.loader, compat._Loader)
    assert not isinstance(spec.loader._inner, compat._Loader)  # wrapped once: the inner call got None from it
    assert spec.loader.name == compat.TARGET  # the real loader's attributes show through
