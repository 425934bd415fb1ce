"""The package version (a module of its own, so submodules need not import the package)."""

__version__ = "0.1.0"
