# The one entry point for humans and CI. State lives in .docqa/ (git-ignored).
VENV   := $(or $(DOCQA_HOME),$(CURDIR)/.docqa)/venv
DOCQA  := $(VENV)/bin/docqa
PYTEST := $(VENV)/bin/python -m pytest

.PHONY: help venv setup up down status test unit lint bench clean constraints

help:
	@echo "make up      start the local stack, ingest the samples, ask a question"
	@echo "make down    stop everything 'make up' started"
	@echo "make test    lint + the whole test suite (unit, integration, e2e) on real servers"
	@echo "make bench   benchmarks (write bench/results/*.json)"

venv:
	@bash deploy/bootstrap.sh

setup: venv
	@$(DOCQA) setup

up: venv
	@$(DOCQA) up

down:
	@if [ -x "$(DOCQA)" ]; then "$(DOCQA)" down; else echo "nothing to stop"; fi

status: venv
	@$(DOCQA) status

lint: venv
	$(VENV)/bin/ruff check --no-cache .
	$(VENV)/bin/ruff format --no-cache --check .
	$(VENV)/bin/mypy

test: setup lint
	$(PYTEST)

unit: venv
	$(PYTEST) tests/unit

# each prints its table and writes bench/results/<name>.json; the eval sets come from ../shared
# when it is there. bench.query starts the local stack (make up) if it is not running; bench.load
# and bench.soak use it; bench.report rewrites BENCHMARKS.md from the results.
bench: setup
	$(VENV)/bin/python -m bench.pool --quick
	$(VENV)/bin/python -m bench.pool_prefix
	$(VENV)/bin/python -m bench.faq
	$(VENV)/bin/python -m bench.retrieval_eval
	$(VENV)/bin/python -m bench.ingest
	$(VENV)/bin/python -m bench.query --up
	$(VENV)/bin/python -m bench.query_embedding
	$(VENV)/bin/python -m bench.load
	$(VENV)/bin/python -m bench.soak --quick
	$(VENV)/bin/python -m bench.rate_limit
	$(VENV)/bin/python -m bench.front_door
	$(VENV)/bin/python -m bench.answer_eval --quick
	$(VENV)/bin/python -m bench.report

clean: down
	rm -rf .docqa

# after a change to pyproject.toml's dependencies: pin what is installed now, then `make test`
constraints: venv
	@{ sed -n '/^#/p' deploy/constraints.txt; $(VENV)/bin/pip freeze --exclude-editable; } > deploy/constraints.txt.new
	@mv deploy/constraints.txt.new deploy/constraints.txt
	@echo "deploy/constraints.txt: $$(grep -vc '^#' deploy/constraints.txt) packages pinned"
