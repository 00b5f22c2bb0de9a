"""Chip-side hand-off: the folded graph, folding and quantization, and the exporters that read it."""
