# `make test` is the one test command: CI (.ci/run) calls it on a fresh machine. It installs what the
# tests need: the venv with the `dev` extra, and the system tools the tests drive (system-tools).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SANDBOX_STAMP := $(VENV)/.installed-sandbox

.PHONY: test test-fast install system-tools lint typecheck imports pytest crds format clean demo

test: lint typecheck imports pytest

# The inner loop: unit and integration tests, not the slow ones (e2e, torchrun, full local runs); tests/tiers.py.
test-fast: install system-tools
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) -m "(unit or integration) and not slow" --durations=10

# The tests drive real tools: promtool and prometheus (alert rules, a real scrape of the operator) and
# kubectl (against the API emulator). Debian's prometheus and kubernetes-client packages, installed
# with apt-get when missing (as root, or through sudo); a machine that has them installs nothing.
system-tools:
	@missing=""; \
	{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || missing=" prometheus"; \
	command -v kubectl >/dev/null 2>&1 || missing="$$missing kubernetes-client"; \
	if [ -n "$$missing" ]; then \
		command -v apt-get >/dev/null || { echo "the tests need$$missing (promtool, prometheus, kubectl): no apt-get here, install them"; exit 1; }; \
		sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
		echo "installing Debian's$$missing with apt-get (the tests drive promtool, prometheus and kubectl)"; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

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

# --durations: the 25 slowest tests, to keep an eye on the suite's time (docs/testing.md).
# PYTEST_WORKERS=2 (the default, CI's): two processes (pytest-xdist), each test module whole on one (--dist
# loadfile), about 35% less time than one; PYTEST_WORKERS=0: one process, as before (docs/testing.md).
PYTEST_WORKERS ?= 2
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) --dist loadfile
pytest: install system-tools
	$(BIN)/python -m pytest $(PYTEST_PARALLEL) --durations=25

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
