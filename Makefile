# Everything runs from a local virtual environment built from pyproject.toml,
# with the exact versions pinned in constraints.txt.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: all render check lint test quick venv constraints clean broken-specs kernel-material mutation bench

all: render

$(STAMP): pyproject.toml constraints.txt
	@echo "Setting up $(VENV) from pyproject.toml and constraints.txt (first run only)..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --progress-bar off --disable-pip-version-check \
		-c constraints.txt -e '.[test]'
	$(BIN)/python -m compileall -q codegen
	touch $@

venv: $(STAMP)

# The main job: render every bundled spec in isa/ into generated/.
render: $(STAMP)
	$(BIN)/kgen render

check: $(STAMP)
	$(BIN)/kgen check

# Lint and types, as configured in pyproject.toml: ruff over the code, tests and benchmarks,
# mypy over codegen/.  A finding fails the target.
lint: $(STAMP)
	$(BIN)/ruff check codegen tests benchmarks
	$(BIN)/ruff format --check codegen tests benchmarks
	$(BIN)/mypy

# The whole test suite, on every core, after lint and types; .ci/run calls exactly this.
test: $(STAMP) lint kernel-material
	$(BIN)/python -m pytest -n auto

# The quick loop while editing: everything but the tests marked slow.
quick: $(STAMP)
	$(BIN)/python -m pytest -n auto -m "not slow"

# Every mutant of the generated C of every spec through compare (kgen mutate); the time and
# score of the run go to benchmarks/mutation.txt.
mutation: $(STAMP)
	$(BIN)/python benchmarks/bench_mutation.py

# Debian's kernel source and headers for checkpatch and kbuild; fails only under CI=true
# (the tests that need them skip with the reason it records in .kernel/STATUS).
kernel-material:
	bash tests/kernel/get-kernel-material

# Re-pin after changing dependencies in pyproject.toml.
constraints: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check \
		| sed '1i # Exact versions installed by `make venv`; regenerate with `make constraints`.' \
		> constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis .kernel .mypy_cache .ruff_cache

# Rewrite the broken-spec corpus in tests/broken/ from its definitions.
broken-specs: $(STAMP)
	$(BIN)/python tests/broken/regen.py

# Every row of the README's performance table, measured now (ratios in the same run).
bench: $(STAMP)
	$(BIN)/python benchmarks/run.py
