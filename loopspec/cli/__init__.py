"""The ``loopspec`` command line; ``main`` is the console script's entry point."""

from .common import EXIT_CODES, EXIT_FAILED, EXIT_OK, EXIT_USAGE, swapped_kind
from .main import build_parser, main

__all__ = ["EXIT_CODES", "EXIT_FAILED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main", "swapped_kind"]
