# cfn-chainermn: `make demo` runs the main job locally, `make test` runs the tests.
# Each target installs what it needs (a .venv, and Debian packages via apt-get when root).

SHELL := /bin/bash
# A venv from the system Python: the local cluster's `chainer` user must be able to read it.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || command -v python3)
VENV := .venv
# As root in a checkout other users cannot search (a clone under /root, mode 700), that user could
# not run the venv's python: the venv then lives in a root-owned folder outside the checkout,
# /var/lib/cfn-chainermn/<hash>/venv, and .venv links to it (cfn_chainermn/local/places.py).
PLACES := $(PYTHON) -m cfn_chainermn.local.places
VENV_HOME := $(or $(shell $(PLACES) where $(VENV) 2>/dev/null),$(VENV))
BIN := $(VENV_HOME)/bin
STAMP := $(VENV_HOME)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
SYSDEPS_STAMP := $(VENV_HOME)/.sysdeps
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(SYSDEPS_STAMP): scripts/install-sysdeps.sh
	bash scripts/install-sysdeps.sh
	@$(PLACES) venv $(VENV)
	@mkdir -p $(VENV_HOME)
	@touch $@

$(STAMP): pyproject.toml Makefile constraints.txt
	@$(PLACES) venv $(VENV)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV_HOME)
	# setuptools 74 dropped distutils.msvccompiler, which `import chainer` reaches via numpy.distutils.
	$(PIP) install -U pip 'setuptools<74' wheel
	# constraints.txt pins what the suite was verified with: a new cfn-lint or moto release must not break CI.
	# compat: a plain path in a .pth; the default finder hook costs every command ~15 ms at start-up
	$(PIP) install -c constraints.txt -e '.[test]' --config-settings editable_mode=compat
	# Chainer 7.8.1 is an sdist whose setup.py needs pkg_resources, and it breaks on numpy 2.
	$(PIP) install -c constraints.txt --no-build-isolation 'setuptools<74' 'numpy<2' 'chainer==7.8.1' mpi4py scikit-learn
	@touch $@

$(CHECKOV_STAMP):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	# checkov pins an old boto3, so it lives in a venv of its own.
	$(CHECKOV_VENV)/bin/python -m pip --disable-pip-version-check -q install 'checkov==3.3.30'
	@touch $@

install: $(SYSDEPS_STAMP) $(STAMP) $(CHECKOV_STAMP) ## .venv with the package and test tools, Debian packages when root
	@# the AMI recipe's pinned CPU stack, downloaded now so its test installs it with no network
	$(BIN)/python -m cfn_chainermn.ami.wheelhouse .cache/ami-wheelhouse
	@# the cuda12 profile's stack, CuPy included (113 MB): the AMI step's test and the node agent's
	@# first-boot install run from it offline (tests/ami/test_ami_stack_cuda12.py, tests/node/test_chainer_stack.py)
	$(BIN)/python -m cfn_chainermn.ami.wheelhouse --profile cuda12 --with-gpu .cache/ami-wheelhouse-cuda12
	@# the node agent's hash-pinned dependencies: a local mirror without this project, for the
	@# test that boots a node from the released template with no index (tests/template/test_bootstrap_e2e.py)
	test -f .cache/agent-wheelhouse/.complete || { $(PIP) download --no-deps --only-binary :all: --require-hashes \
	  -r cfn_chainermn/node/agent-lock.txt -d .cache/agent-wheelhouse && touch .cache/agent-wheelhouse/.complete; }
	@# Chainer 7 removed the 'hierarchical' communicator that 2018 scripts ask for: the local
	@# cluster's jobs get pure_nccl (GPU) or naive instead, with one warning line (docs/jobs.md)
	$(BIN)/python -m cfn_chainermn.jobs.compat_install
	@# bytecode for the package, also where PYTHONDONTWRITEBYTECODE is set (CI images set it): else
	@# every command compiles the modules it imports, ~30 ms of each `job submit`
	$(BIN)/python -m compileall -q cfn_chainermn

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check cfn_chainermn tests benchmarks examples scripts
	$(BIN)/mypy

test: install lint ## run the whole test suite
	$(BIN)/python -m pytest -q

golden: install templates ## refresh golden files and the released templates (review the diff before committing)
	$(BIN)/python -m cfn_chainermn.config.reference > docs/configuration.md
	$(BIN)/python -m pytest -q --update-golden -m "not slow" || true
	$(BIN)/python -m pytest -q -m "not slow"

templates: $(STAMP) ## regenerate the released templates/
	$(BIN)/cfn-chainermn template --format yaml -o templates/chainermn-cluster.yaml
	$(BIN)/cfn-chainermn template --format json -o templates/chainermn-cluster.json

demo: install ## the main job on embedded defaults: emulated AWS + a local cluster
	$(BIN)/python scripts/demo.py

bench: install ## benchmarks, as ratios against baselines timed in the same run
	$(BIN)/python benchmarks/run.py

clean: ## remove the venvs, caches and local state (also what install put outside the checkout)
	-test -x $(BIN)/cfn-chainermn && $(BIN)/cfn-chainermn local down --all 2>/dev/null
	rm -rf $(VENV) $(CHECKOV_VENV) .cache/ami-wheelhouse .cache/ami-wheelhouse-cuda12 .cache/agent-wheelhouse .pytest_cache .mypy_cache .ruff_cache .hypothesis *.egg-info out .local-cluster .demo
	$(PLACES) remove

.PHONY: help install lint test golden templates demo bench clean
