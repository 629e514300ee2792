"""Render the AMI recipe in ami/ (jinja2, StrictUndefined) for one version profile.

The output directory is what Packer runs: chainermn.pkr.hcl, scripts/NN-*.sh and
ami-manifest.json (what the image will say it contains). Rendering is pure apart from writing
the files; running Packer lives in ami_packer.py.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from cfn_chainermn import __version__
from cfn_chainermn.ami.lock import LOCK_DIR, Package, lock_digest
from cfn_chainermn.ami.profiles import CUPY, Profile, load, render_blockers
from cfn_chainermn.errors import ConfigError

RECIPE_DIR = Path(__file__).resolve().parents[2] / "ami"
TEMPLATE = "packer/chainermn.pkr.hcl.j2"
BEFORE_REBOOT = ("10-wait-for-boot", "20-cuda")
AFTER_REBOOT = ("30-openmpi", "40-python-stack", "50-agent", "60-system", "90-smoke-and-manifest")
STEPS = BEFORE_REBOOT + AFTER_REBOOT
TAG_PREFIX = "cfn-chainermn:"
PROFILE_TAG = TAG_PREFIX + "ami-profile"
IMPORTS = ("chainer", "chainermn", "chainercv", "chainercv.links", "chainerrl", "chainerrl.agents")


def recipe_settings(recipe_dir: Path) -> dict[str, Any]:
    """ami/recipe.yaml: MCA defaults, sshd settings and smoke data shared by all profiles."""
    data = yaml.safe_load((recipe_dir / "recipe.yaml").read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ConfigError(f"{recipe_dir / 'recipe.yaml'}: must be a YAML mapping")
    return data


def tags(profile: Profile) -> dict[str, str]:
    """AMI tags: `ami list` reads the versions back from these."""
    out = {"Name": f"cfn-chainermn-{profile.name}", PROFILE_TAG: profile.name,
           TAG_PREFIX + "version": __version__}
    out.update({TAG_PREFIX + key: value for key, value in profile.versions().items()})
    return out


def manifest(profile: Profile) -> dict[str, Any]:
    """The JSON written to /etc/cfn-chainermn/ami-manifest.json on the image."""
    path, ld_path = search_dirs(profile)
    return {"profile": profile.name, "cfn_chainermn": __version__, "versions": profile.versions(),
            "openmpi_prefix": profile.openmpi["prefix"], "cuda_path": profile.cuda["path"],
            "python": stack_python(profile), "agent": f"{profile.agent['prefix']}/venv/bin/cfn-chainermn",
            # what jobs need first on PATH / LD_LIBRARY_PATH (for the agent's mca_base_env_list)
            "env": {"PATH": path, "LD_LIBRARY_PATH": ld_path},
            "packages": {p.name: p.version for p in profile.packages}}


def search_dirs(profile: Profile) -> tuple[list[str], list[str]]:
    """The stack's bin and lib dirs: the Chainer interpreter, CUDA-aware MPI, CUDA."""
    venv = profile.python.get("venv")
    bins = ([f"{venv}/bin"] if venv else []) + [f"{profile.openmpi['prefix']}/bin",
                                                f"{profile.cuda['path']}/bin"]
    return bins, [f"{profile.openmpi['prefix']}/lib", f"{profile.cuda['path']}/lib64"]


def stack_python(profile: Profile) -> str:
    venv = profile.python.get("venv")
    return f"{venv}/bin/python" if venv else str(profile.python["interpreters"][-1])


def compat_files(profile: Profile) -> dict[str, str]:
    """The removed-communicator shim (jobs/compat_install.py) for a Chainer >= 7 stack; an older
    ChainerMN still has the names it would substitute, on Pythons the shim does not run on."""
    from cfn_chainermn.jobs import compat_install

    chainer = profile.package("chainer")
    if chainer is None or int(chainer.version.split(".")[0]) < 7:
        return {}
    return compat_install.files()


def cpu_variant(profile: Profile, *, venv: str, mpi_prefix: str, interpreter: str = sys.executable,
                keep_gpu: bool = False) -> Profile:
    """The same pinned stack minus CuPy (unless `keep_gpu`: CuPy 13 installs and imports without
    a GPU), into `venv`, against the MPI at `mpi_prefix`.

    This is what CI executes for real: it proves the pins install and work together.
    """
    return dataclasses.replace(
        profile, gpu_builder=False,
        packages=tuple(p for p in profile.packages if keep_gpu or not p.gpu),
        python={**profile.python, "venv": venv, "interpreters": [interpreter], "system_packages": []},
        openmpi={**profile.openmpi, "prefix": mpi_prefix})


def stack_marker(profile: Profile) -> str:
    """The JSON a lock-built stack leaves in its prefix, so the node agent skips its install
    (node/chainer_stack.py compares the digest); "" for a profile with its own pins."""
    lock = profile.python.get("packages_from")
    if not lock:
        return ""
    return json.dumps({"lock": lock, "sha256": lock_digest(profile.packages), "by": f"ami build {profile.name}"},
                      sort_keys=True)


def shared_functions(name: str) -> str:
    """The function definitions of a script in the package's data/ (between its START and END OF
    FUNCTIONS lines), for a step to include: one copy of the code, run by the node agent too."""
    text = (LOCK_DIR / name).read_text(encoding="utf-8")
    return text.split("# START OF FUNCTIONS\n", 1)[1].split("# END OF FUNCTIONS", 1)[0].rstrip() + "\n"


def package_file(name: str) -> str:
    """A file of the package's data/ (less its last newline), for a step to include: the node
    agent uses the same file."""
    return (LOCK_DIR / name).read_text(encoding="utf-8").rstrip("\n")


def _hcl(value: Any) -> str:
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")


def _environment(recipe_dir: Path) -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(recipe_dir)),
                             undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
                             # bash's ${#array[@]} would open a jinja comment
                             comment_start_string="{##", comment_end_string="##}")
    env.filters["q"] = lambda v: shlex.quote(str(v))
    env.filters["js"] = json.dumps
    env.filters["hcl"] = _hcl
    env.globals["shared_functions"] = shared_functions
    env.globals["package_file"] = package_file
    return env


def context(profile: Profile, recipe_dir: Path, *, pip_cache_dir: str = "") -> dict[str, Any]:
    """Everything the templates may use; a name missing here fails rendering (StrictUndefined)."""
    pkgs = profile.packages
    plain = [p for p in pkgs if p.stage != "build" and not p.patch and p.name != "pip"]
    reboot = bool(profile.cuda.get("driver_packages")) and profile.cuda["source"] == "nvidia-apt"
    imports = list(IMPORTS) + (["cupy"] if any(p.gpu and CUPY.match(p.name) for p in pkgs) else [])
    return {
        "p": profile, "recipe": recipe_settings(recipe_dir), "tool_version": __version__,
        "pip_packages": [p for p in pkgs if p.name == "pip"],
        "build_packages": [p for p in pkgs if p.stage == "build" and p.name != "pip"],
        "main_packages": plain,
        "patched_packages": [p for p in pkgs if p.patch and p.stage != "build"],
        "pip_cache_dir": pip_cache_dir,
        "compat_files": compat_files(profile), "compat_module": "cfnmn_chainermn_compat",
        "smoke_versions": {p.name: p.version for p in pkgs if not p.marker},
        "smoke_imports": imports, "smoke_python": stack_python(profile),
        "path_dirs": search_dirs(profile)[0], "ld_dirs": search_dirs(profile)[1],
        "manifest_json": json.dumps(manifest(profile), indent=2, sort_keys=True),
        "tags": tags(profile), "reboot": reboot, "stack_marker": stack_marker(profile),
        "scripts_before_reboot": [f"scripts/{s}.sh" for s in BEFORE_REBOOT],
        "scripts_after_reboot": [f"scripts/{s}.sh" for s in AFTER_REBOOT],
    }


def render_template(env: Any, name: str, ctx: dict[str, Any]) -> str:
    """Render one template; any jinja error names the template and the line."""
    import jinja2

    try:
        text: str = env.get_template(name).render(**ctx)
    except jinja2.TemplateSyntaxError as exc:
        where = exc.name if exc.name and not exc.name.startswith("/") else name
        raise ConfigError(f"ami/{where}:{exc.lineno}: {exc.message}") from exc
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"ami/{name}: {exc.message}; the template uses a variable the "
                          "profile or recipe does not define") from exc
    except jinja2.TemplateError as exc:
        raise ConfigError(f"ami/{name}: {exc}") from exc
    return text


def render(profile: Profile, out_dir: Path, *, recipe_dir: Path = RECIPE_DIR,
           pip_cache_dir: str = "", steps: tuple[str, ...] = STEPS) -> list[Path]:
    """Write the Packer template, the scripts and the manifest; refuse null checksums."""
    blockers = render_blockers(profile)
    if blockers:
        raise ConfigError(blockers)
    env = _environment(recipe_dir)
    ctx = context(profile, recipe_dir, pip_cache_dir=pip_cache_dir)
    rendered: dict[Path, str] = {}
    for step in steps:
        rendered[Path("scripts") / f"{step}.sh"] = render_template(env, f"scripts/{step}.sh.j2", ctx)
    if steps == STEPS:
        rendered[Path("chainermn.pkr.hcl")] = render_template(env, TEMPLATE, ctx)
        rendered[Path("ami-manifest.json")] = ctx["manifest_json"] + "\n"
    written = []
    for rel, text in rendered.items():
        path = out_dir / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            if path.suffix == ".sh":
                path.chmod(0o755)
        except OSError as exc:
            raise ConfigError(f"-o {out_dir}: cannot write {path}: {exc.strerror or exc}; "
                              "give -o a directory you can create and write") from exc
        written.append(path)
    return written


def render_profile(name: str, out_dir: Path, *, recipe_dir: Path = RECIPE_DIR) -> list[Path]:
    return render(load(recipe_dir, name), out_dir, recipe_dir=recipe_dir)


__all__ = ["RECIPE_DIR", "STEPS", "Package", "Profile", "cpu_variant", "render", "render_profile",
           "tags"]
