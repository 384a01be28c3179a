# The two commands the README starts with: `make demo` and `make test`.
# Each installs what it needs (Debian packages as root, a venv with the project) on first use.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck contracts pytest bench chaos clean system-deps kube-binaries istioctl

demo: $(STAMP)
	$(BIN)/canary-bot demo

test: lint typecheck contracts pytest

lint: $(STAMP)
	$(BIN)/ruff check bot commands policies sandbox tests bench
	$(BIN)/ruff format --check bot commands policies sandbox tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict bot commands policies sandbox

contracts: $(STAMP)
	$(BIN)/lint-imports

# Five workers on two cores: most of the slow tests wait on real clocks (Prometheus scrapes,
# leases, the demo's steps), not on a CPU (four kept the cores about 60 % busy); an idle worker
# takes tests from a busy one's queue.
PYTEST_WORKERS ?= 5
pytest: $(STAMP) kube-binaries istioctl
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal

# The real kube-apiserver and etcd that tests/kube runs, built from tools/kube (Go) on first use
# (many minutes on 2 cores), then cached in .cache/kube/: a second run only prints their paths.
kube-binaries:
	@scripts/kube-binaries.sh

# Istio's own validator, built from tools/istioctl (Go) on first use (about 10 minutes on 2
# cores), then cached in .cache/istioctl/; tests/mesh/test_istioctl.py checks every plan with it.
istioctl:
	@scripts/istioctl.sh >/dev/null

bench: $(STAMP)
	$(BIN)/python bench/apply.py
	$(BIN)/python bench/rollouts.py
	$(BIN)/python bench/ack.py
	$(BIN)/python bench/health.py

chaos: $(STAMP)
	$(BIN)/python bench/chaos.py

system-deps:
	@scripts/system-deps.sh

$(STAMP): pyproject.toml | system-deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@# the sandbox is not part of the product's package: the source tree is on this venv's path
	$(BIN)/python -c 'import site, pathlib; pathlib.Path(site.getsitepackages()[0], "canary_source_tree.pth").write_text(str(pathlib.Path.cwd()) + "\n")'
	@touch $(STAMP)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
