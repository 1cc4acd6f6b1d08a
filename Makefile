# `make test` is the one test command: CI (.ci/run) calls it on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SANDBOX_STAMP := $(VENV)/.installed-sandbox

.PHONY: test install lint typecheck imports pytest crds format clean demo

test: lint typecheck imports pytest

# The venv is reused while pyproject.toml is unchanged; everything installs from the repo's own files.
# $(call install_extra,EXTRA): the venv, then the project with that extra.
define install_extra
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(1)]'
endef

$(STAMP): pyproject.toml
	$(call install_extra,dev)
	touch $(STAMP) $(SANDBOX_STAMP)

# `make demo` needs only the sandbox extra (operator, trainer, emulator): on a fresh clone it skips
# the test and lint tools (wandb, moto, helm, mypy...), about half the install. `make test` covers it.
$(SANDBOX_STAMP): pyproject.toml
	$(call install_extra,sandbox)
	touch $(SANDBOX_STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check operator trainer_image sandbox tests
	$(BIN)/ruff format --check operator trainer_image sandbox tests

typecheck: install
	$(BIN)/mypy operator/kubetune_operator trainer_image/kubetune_trainer sandbox/kubetune_sandbox

imports: install
	$(BIN)/lint-imports

pytest: install
	$(BIN)/python -m pytest

# The quick start on this machine: a tiny stand-in model, `kubetune sandbox`, examples/quickstart.yaml applied.
DEMO_WORKDIR ?= .kubetune-demo
demo: $(SANDBOX_STAMP)
	$(BIN)/python -m kubetune_sandbox.demo --workdir $(DEMO_WORKDIR)

crds: install
	$(BIN)/kubetune crds

format: install
	$(BIN)/ruff check --fix operator trainer_image sandbox tests
	$(BIN)/ruff format operator trainer_image sandbox tests

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
