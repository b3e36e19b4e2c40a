"""Errors that the command line prints as one line instead of a traceback."""

from __future__ import annotations


class C2CError(Exception):
    """Base class of every error meant for the user: its message names the bad file, key or value."""


class DatasetError(C2CError):
    """A dataset on disk is missing, malformed or inconsistent."""


class ConfigError(C2CError):
    """A command-line option or configuration value is invalid."""


class OutputError(C2CError):
    """An output directory or file cannot be created or written."""
