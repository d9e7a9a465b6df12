# The two commands of the README: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit setup system-deps-demo system-deps-test clean bench

demo: system-deps-demo $(STAMP)
	$(BIN)/gateway demo

# The whole suite against Exchange Online's IMAP personality (the default --mail-mode), then
# again against plain, permissive Dovecot: in that mode tests/conftest.py keeps every test whose
# mail server follows the mode (MODE_FIXTURES) and deselects the rest, which the first pass ran.
test: system-deps-test $(STAMP) lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider
	$(BIN)/pytest -q -p no:cacheprovider --mail-mode=permissive

lint: $(STAMP)
	$(BIN)/ruff check gateway tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

system-deps-demo:
	@scripts/install-system-deps.sh demo

system-deps-test:
	@scripts/install-system-deps.sh test

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

setup: system-deps-test $(STAMP)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
