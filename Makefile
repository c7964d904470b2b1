# make run | make test | make lint | make migrate | make bench
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint format migrate bench clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

migrate: $(STAMP)
	$(BIN)/alembic upgrade head

run: migrate
	@echo "Development token (tenant 'dev', all roles):"
	@BATCHSVC_DEV=1 $(BIN)/flask --app wsgi dev-token 2>/dev/null
	@echo "Try: curl -H \"Authorization: Bearer <token>\" http://127.0.0.1:$(PORT)/api/batch/v1"
	BATCHSVC_DEV=1 $(BIN)/flask --app wsgi run --port $(PORT)

test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check batchsvc tests migrations bench wsgi.py
	$(BIN)/ruff format --check batchsvc tests migrations bench wsgi.py

format: $(STAMP)
	$(BIN)/ruff format batchsvc tests migrations bench wsgi.py

bench: migrate
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
