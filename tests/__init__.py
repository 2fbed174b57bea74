"""Tests, one folder per folder of lib/ (tests/nets/test_cells.py tests lib/nets/cells.py)."""
