"""The library's version (pyproject.toml states the same; tests/test_package.py checks)."""

__version__ = "0.1.0"
