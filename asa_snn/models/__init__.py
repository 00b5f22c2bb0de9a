"""Spiking network models: neurons, surrogate gradients, attention and the ASA networks."""
