"""The one operation-count and energy model, shared by the training-side analysis and the chip-side
simulators and budgets: :mod:`.model` (LayerOps, energy models, Eq. 11) and :mod:`.synapses`
(exact synaptic operations from layer geometry). NumPy only; imports nothing of the pipeline."""
