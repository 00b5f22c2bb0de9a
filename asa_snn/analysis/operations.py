"""Per-layer operation descriptions (:class:`~asa_snn.energy.model.LayerOps`) of a measured model.

Every ``Conv2d`` / ``Linear`` outside an attention module becomes one conv / linear entry, in call
order; the attention slot of a block (a module named ``*.attention`` with ``extra_macs``) becomes an
attention entry right after it when it adds MACs. The neurons a synaptic module drives are those of
its block (``<block>.neuron``). The first synaptic module called (fed by the network input) and any
module whose input was not always a non-negative integer count are real-valued-input (MAC) layers.

FLOPs and the boundary-exact synaptic ops (``event_fanout_sum``) come from the module's geometry
and its measured input map (input summed per position over steps and samples) through
:mod:`asa_snn.energy.synapses`, the same functions the simulators' counts use
(:mod:`asa_snn.simulators.operations`).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from asa_snn.analysis.recorder import Measurements, SynapseStats
from asa_snn.energy.model import LayerOps
from asa_snn.energy.synapses import ConvGeometry, Geometry, LinearGeometry, dense_flops, synaptic_ops
from asa_snn.errors import AsaSnnError


def module_geometry(name: str, module: nn.Module, input_shape: tuple[int, ...]) -> Geometry:
    """The :mod:`~asa_snn.energy.synapses` geometry of a ``Conv2d`` (on ``input_shape`` (C, H, W))
    or ``Linear`` module.

    Raises:
        AsaSnnError: a conv with string padding (``"same"``, ``"valid"``) or a non-zero padding mode,
            which the op count does not model.
    """
    if isinstance(module, nn.Conv2d):
        if isinstance(module.padding, str) or module.padding_mode != "zeros":
            raise AsaSnnError(
                f"{name}: conv padding {module.padding!r} with padding_mode {module.padding_mode!r}; "
                "operation counts need integer zero padding"
            )
        return ConvGeometry(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            input_shape[1:],
            module.stride,
            module.padding,
            module.dilation,
            module.groups,
            name,
        )
    return LinearGeometry(module.in_features, module.out_features, name)


def _input_map(stats: SynapseStats, geometry: Geometry) -> np.ndarray:
    """The measured input map in the geometry's input shape (a linear layer's leading dims summed)."""
    if isinstance(geometry, LinearGeometry):
        return stats.input_sum.reshape(-1, geometry.in_features).sum(axis=0)
    return stats.input_sum


def model_layer_ops(model: nn.Module, measurements: Measurements) -> list[LayerOps]:
    """LayerOps per sample of every synaptic module and attention slot of ``model`` (module docstring).

    Raises:
        AsaSnnError: a synaptic module drives a spiking layer that was not measured.
    """
    modules = dict(model.named_modules())
    n, steps = measurements.n_samples, measurements.timesteps
    ops: list[LayerOps] = []
    for stats in sorted(measurements.synapses.values(), key=lambda s: s.order):
        module = modules[stats.name]
        geometry = module_geometry(stats.name, module, stats.input_shape)
        parent = stats.name.rsplit(".", 1)[0] if "." in stats.name else ""
        neuron_name = f"{parent}.neuron" if parent else "neuron"
        neurons = active = spikes = 0.0
        if neuron_name in modules:
            if neuron_name not in measurements.layers:
                raise AsaSnnError(
                    f"model_layer_ops: spiking layer {neuron_name!r} (driven by {stats.name!r}) was not "
                    f"measured; measure all layers (layers=None) to count operations"
                )
            layer = measurements.layers[neuron_name]
            neurons = int(np.prod(layer.shape))
            active, spikes = layer.fired.sum() / n, layer.spikes.sum() / n
        ops.append(
            LayerOps(
                name=stats.name,
                kind="conv" if isinstance(module, nn.Conv2d) else "linear",
                flops=float(dense_flops(geometry)),
                input_size=int(np.prod(geometry.input_shape)),
                input_events=float(stats.input_sum.sum() / n),
                input_is_spiking=stats.order > 0 and stats.integer_valued,
                timesteps=steps,
                neurons=int(neurons),
                event_fanout_sum=synaptic_ops(_input_map(stats, geometry), geometry) / n,
                active_neuron_steps=float(active),
                output_spikes=float(spikes),
            )
        )
        attention_name = f"{parent}.attention"
        if attention_name in measurements.attention_shapes and hasattr(modules[attention_name], "extra_macs"):
            macs = modules[attention_name].extra_macs(steps, *measurements.attention_shapes[attention_name])
            if macs:
                ops.append(LayerOps(attention_name, "attention", timesteps=steps, attention_macs=float(macs)))
    return ops
