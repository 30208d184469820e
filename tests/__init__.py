"""The test suite is one package: test modules import their helpers from `tests.support` and
their fixture apps from `tests.apps`, never from each other (tests/test_import_hygiene.py)."""
