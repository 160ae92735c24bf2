"""The package version, in a module of its own so that no deepscan module imports the package itself."""

__version__ = "1.0.0"
