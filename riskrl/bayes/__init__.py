"""Bayesian neural networks with one uncertainty interface (predict / particles)."""
