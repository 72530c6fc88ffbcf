"""Translations of neural-network layers: convolutions, normalisations, pooling and resizing."""

from __future__ import annotations
