"""Torch runtime: special functions, flows, training, verification."""
