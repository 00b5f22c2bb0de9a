"""Simulators that run a folded graph and count spikes: one interface, several backends."""
