"""Deploy stage: spike budgets, Speck deployment through samna, Loihi deployment through Lava.

Only the CLI imports this package. Nothing here imports ``samna`` or ``sinabs.backend.dynapcnn``
at module import time: they are imported inside the function that drives hardware, after
:func:`asa_snn.chips.speck.samna_detect.detect_samna` found the real samna package.
"""
