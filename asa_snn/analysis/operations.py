"""Per-layer operation descriptions (:class:`~asa_snn.energy.model.LayerOps`) of a measured model.

Every ``Conv2d`` / ``Linear`` outside an attention module becomes one conv / linear entry, in call
order; the attention slot of a block (a module named ``*.attention`` with ``extra_macs``) becomes an
attention entry right after it when it adds MACs. The neurons a synaptic module drives are those of
its block (``<block>.neuron``). The first synaptic module called (fed by the network input) and any
module whose input was not always a non-negative integer count are real-valued-input (MAC) layers.

The exact per-position fan-out of a conv (the number of synapses an input position reaches, smaller
on the border of a padded conv) is the gradient of ``sum(conv_ones(x))`` with respect to ``x``; summed
against the measured input counts it gives ``event_fanout_sum`` (:mod:`asa_snn.energy.model`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from asa_snn.analysis.recorder import Measurements, SynapseStats
from asa_snn.energy.model import LayerOps
from asa_snn.errors import AsaSnnError


def conv_fanout_map(conv: nn.Conv2d, input_shape: tuple[int, int, int]) -> np.ndarray:
    """float64 [C_in, H, W]: synapses reached by one event at each input position of ``conv``."""
    x = torch.zeros((1, *input_shape), dtype=torch.float64, requires_grad=True)
    ones = torch.ones_like(conv.weight, dtype=torch.float64)
    y = F.conv2d(x, ones, None, conv.stride, conv.padding, conv.dilation, conv.groups)
    y.sum().backward()
    return x.grad[0].numpy()


def dense_flops(module: nn.Module, output_shape: tuple[int, ...]) -> float:
    """FLOPs per step: conv k_h k_w H_out W_out (C_in / groups) C_out; linear in * out."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        _, h_out, w_out = output_shape
        return float(kh * kw * h_out * w_out * module.in_channels // module.groups * module.out_channels)
    return float(module.in_features * module.out_features)


def _fanout_sum(module: nn.Module, stats: SynapseStats) -> float:
    if isinstance(module, nn.Conv2d):
        return float((conv_fanout_map(module, stats.input_shape) * stats.input_sum).sum())
    return float(stats.input_sum.sum() * module.out_features)


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
                flops=dense_flops(module, stats.output_shape),
                input_size=int(np.prod(stats.input_shape)),
                input_events=float(stats.input_sum.sum() / n),
                input_is_spiking=stats.order > 0 and stats.integer_valued,
                timesteps=steps,
                neurons=int(neurons),
                event_fanout_sum=_fanout_sum(module, stats) / n,
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
