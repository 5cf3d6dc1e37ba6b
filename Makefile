# Two commands: `make run` and `make test` (README "Quick start").
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint bench clean

$(STAMP): requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed; set PYTHON=python3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: install
	mkdir -p var
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py setup_roles
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py ensure_admin
	@echo "Starting web (http://127.0.0.1:8000/admin/), worker and beat. Ctrl-C stops all."
	$(BIN)/honcho --procfile Procfile start

test: install
	$(BIN)/pytest -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache

# Benchmarks on PostgreSQL and Redis (README "Performance"): BENCH_ARGS="--scale 0.05" for a quick look.
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)
