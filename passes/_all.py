"""Imports every pass module so that each registers its passes with the manager."""

from . import canonicalize, cleanup, fold, fusion, memory, precision, simplify  # noqa: F401
