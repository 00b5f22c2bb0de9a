"""Redundancy analysis (paper section 3.2 and 5.5) and energy accounting of trained spiking networks.

- :mod:`~asa_snn.analysis.recorder`: one streaming pass, bounded-size statistics per layer (:func:`measure`).
- :mod:`~asa_snn.analysis.firing`, :mod:`~asa_snn.analysis.features`, :mod:`~asa_snn.analysis.membrane`:
  the paper's metrics as pure functions.
- :mod:`~asa_snn.energy.model`: operation counts and energy presets (pure; shared with the simulators).
- :mod:`~asa_snn.analysis.operations`: :func:`model_layer_ops`, LayerOps of a measured model.
- :mod:`~asa_snn.analysis.report`: :func:`analyze`, writing metrics.json, report.md and figures.
"""
