# `make up` runs the example shop on burrow (`make demo` places orders on it); `make test`
# runs the whole suite. They install what they need: the virtualenv with its packages, and
# RabbitMQ and Redis when they do not answer.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up demo test lint bench services venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,speed,shop]'
	touch $(STAMP)

venv: $(STAMP)

services:
	bash scripts/services.sh

up: venv services
	@echo "example shop: http://127.0.0.1:8000/orders (POST), /products, /orders/{id}/history," \
		"/shop/report, /docs#/shop; 'make demo' in another terminal places orders"
	$(BIN)/burrow up examples.shop.app:app --host 127.0.0.1 --port 8000

demo: venv services
	$(BIN)/python -m examples.shop.demo

test: venv services lint
	bash scripts/services.sh --browser
	bash scripts/services.sh --postgres
	$(BIN)/pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: venv services
	bash scripts/services.sh --tools
	$(BIN)/python -m bench
	$(BIN)/python -m bench.http
	$(BIN)/python -m bench.patterns

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
