"""ChainerMN's removed communicator names, mapped to ones Chainer 7 still has.

ChainerMN 1.3's examples (the 2018 scripts this project replays) and ChainerMN's upstream
examples/chainermn/mnist/train_mnist.py default to `hierarchical`; Chainer 7 removed
`hierarchical`, `two_dimensional` and `single_node`, and its create_communicator raises
`ValueError: Unrecognized communicator` for them (chainermn/communicators/__init__.py in
chainer v7.8.1: naive, flat, non_cuda_aware, pure_nccl and dummy are left). Those three were
GPU (NCCL) communicators, so on a GPU the name becomes `pure_nccl`, the one Chainer 7 recommends;
without a usable GPU (no CuPy, or no CUDA device) it becomes `naive`, the only communicator that
runs on CPU (the upstream example itself uses `naive` without --gpu). Each substitution writes ONE
line to stderr naming it; every other name and argument is passed on untouched.

This file is installed, as the top-level module `cfnmn_chainermn_compat`, into the site-packages
of the environment that holds Chainer, next to a .pth line that imports it at start-up
(cfn_chainermn/jobs/compat_install.py). install() only puts a finder on sys.meta_path; it does
nothing until `chainermn.communicators` is imported, then wraps its create_communicator before
chainermn/__init__ re-exports it. Standard library only (Python >= 3.8), and no cfn_chainermn
imports: the Chainer environment on a node does not have the package.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # not typing's: importing typing would cost every start-up ~10 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

TARGET = "chainermn.communicators"
REMOVED = ("hierarchical", "two_dimensional", "single_node")
GPU_NAME, CPU_NAME = "pure_nccl", "naive"
MARK = "__cfnmn_compat__"  # set on the wrapper, so a second install never wraps twice


def gpu_usable() -> bool:
    """CuPy imports and sees at least one CUDA device (the check chainer's own cuda.available skips)."""
    try:
        import cupy  # type: ignore[import-not-found, import-untyped, unused-ignore]

        return int(cupy.cuda.runtime.getDeviceCount()) > 0
    except Exception:  # no CuPy, no driver, no device: all mean "run on CPU"
        return False


def still_there(name: str) -> bool:
    """An older ChainerMN (1.x, Chainer < 7) still has the communicator: leave it alone."""
    import importlib.util

    try:
        return importlib.util.find_spec(f"{TARGET}.{name}_communicator") is not None
    except (ImportError, ValueError):
        return False


def substitute(name: object, has_gpu: Callable[[], bool] = gpu_usable,
               exists: Callable[[str], bool] = still_there) -> str | None:
    """The communicator to use instead of a removed `name`, or None to pass `name` on."""
    if not isinstance(name, str) or name not in REMOVED or exists(name):
        return None
    return GPU_NAME if has_gpu() else CPU_NAME


def warning(name: str, new: str) -> str:
    """The one line a substitution writes (on CPU it also says why it is not pure_nccl)."""
    why = "" if new == GPU_NAME else " (no usable GPU: CuPy missing or no CUDA device)"
    return f"cfn-chainermn: ChainerMN communicator '{name}' was removed in Chainer 7; using '{new}' instead{why}\n"


def wrap(create: Callable[..., Any], has_gpu: Callable[[], bool] = gpu_usable,
         exists: Callable[[str], bool] = still_there, stderr: Any = None) -> Callable[..., Any]:
    """create_communicator, with the removed names substituted and said once per call."""
    if getattr(create, MARK, False):
        return create
    import functools

    @functools.wraps(create)
    def create_communicator(*args: Any, **kwargs: Any) -> Any:
        if args:
            name: object = args[0]
        else:
            name = kwargs.get("communicator_name")
        new = substitute(name, has_gpu, exists)
        if new is not None:
            if args:
                args = (new, *args[1:])
            else:
                kwargs["communicator_name"] = new
            out = stderr or sys.stderr
            out.write(warning(str(name), new))
            out.flush()
        return create(*args, **kwargs)

    setattr(create_communicator, MARK, True)
    return create_communicator


def patch(module: Any) -> None:
    module.create_communicator = wrap(module.create_communicator)


class _Loader:
    """The real loader of chainermn.communicators, patching the module once it has run."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, attr: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._inner, attr)

    def create_module(self, spec: Any) -> Any:
        return self._inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self._inner.exec_module(module)
        patch(module)


class Finder:
    """A sys.meta_path entry that answers only for chainermn.communicators, by asking the others."""

    busy = False  # a finder behind it that calls importlib.util.find_spec must not bring it back here

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != TARGET or self.busy:
            return None
        self.busy = True
        try:
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(fullname, path, target)
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        spec.loader = _Loader(spec.loader)
                    return spec
            return None
        finally:
            self.busy = False


def install() -> None:
    """What the .pth line calls at start-up: wait for chainermn's import (or patch it, if it came first)."""
    if TARGET in sys.modules:
        for name in (TARGET, "chainermn"):  # chainermn/__init__ re-exported the original
            if hasattr(sys.modules.get(name), "create_communicator"):
                patch(sys.modules[name])
    elif not any(isinstance(f, Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, Finder())
