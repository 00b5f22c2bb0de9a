"""One folder per neuromorphic chip, behind one interface (:mod:`asa_snn.chips.base`) and registry
(:mod:`asa_snn.chips.registry`). Importing this package loads no chip; the registry loads each
chip's ``chip.py`` when a chip is first asked for."""
