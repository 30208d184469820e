# One command for every check: lint, types, tests.
.PHONY: check lint types test screenshots bench

check: lint types test

lint:
	ruff check gateway workbench tests bench scripts examples

types:
	mypy gateway workbench bench

test:
	python -m pytest

screenshots:
	python scripts/export_screenshots.py

bench:
	python -m bench
