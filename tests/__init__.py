"""Tests, in folders that mirror lib/ (tests/nets/test_cells.py tests lib/nets/cells.py)."""
