"""The one operation-count and energy model, shared by the training-side analysis and the chip-side
simulators and budgets: :mod:`.model` (LayerOps, energy models, Eq. 11), :mod:`.synapses` (exact
synaptic operations from layer geometry) and :mod:`.neurobench` (NeuroBench's metrics). NumPy only;
imports nothing of the pipeline."""
