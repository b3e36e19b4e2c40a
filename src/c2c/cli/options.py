"""Option types and defaults shared by several ``c2c`` subcommands."""

from __future__ import annotations

import argparse
import os

API_KEY_ENV = "C2C_SERVE_API_KEY"  # where `c2c serve` and `c2c eval --server` read the key when not given


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def api_key(args: argparse.Namespace) -> str | None:
    """--api-key, else $C2C_SERVE_API_KEY, else None (no key)."""
    return args.api_key if args.api_key is not None else (os.environ.get(API_KEY_ENV) or None)


def threads_option(text: str) -> int:
    """``--threads``: a positive count, or ``auto`` (0)."""
    if text.strip().lower() == "auto":
        return 0
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive thread count or 'auto', got {text!r}")
    return value
