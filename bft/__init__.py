"""The bft package. `__version__` is the fallback of `bft --version` when the package metadata is
not installed (running from a source tree); it must equal pyproject.toml's version (a test checks)."""

__version__ = "0.1.0"
