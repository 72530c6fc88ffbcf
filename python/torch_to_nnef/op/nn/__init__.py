"""Translations of neural-network layers: activations, convolutions, normalisations, pooling, resizing,
attention and losses.
"""
