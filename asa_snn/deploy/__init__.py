"""Deploy stage: running a folded graph on a chip's board (:mod:`asa_snn.deploy.boards`).

The board I/O itself (samna for Speck, Lava for Loihi) lives in each chip's folder
(``asa_snn/chips/<chip>/board.py``). Nothing here imports ``samna`` or ``sinabs.backend.dynapcnn``
at module import time: the chips import them inside the function that drives hardware, after
:func:`asa_snn.chips.speck.samna_detect.detect_samna` found the real samna package.
"""
