"""Translations of integer/rounding arithmetic, reductions, tensor creation and indexing ops."""

from __future__ import annotations
