"""sinabs' ``DynapcnnNetwork`` built and run offline, in a subprocess, on an exported graph.

``sinabs.backend.dynapcnn`` imports samna, whose PyPI package is only a loader that runs pip
against SynSense's index (FACTS.md section 3), so it cannot be imported offline. The subprocess
installs an import hook that answers every ``samna`` / ``samnagui`` import with an empty stand-in
module before importing sinabs: samna is only touched to configure or open a board, never while
sinabs builds the network, maps its edges, sizes its memory or simulates it in software, so
everything measured there is sinabs' own code. The test process itself never imports either.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from asa_snn.convert.graph import FoldedGraph, save_graph

SINABS_SCRIPT = r"""
import importlib.abc, importlib.machinery, json, sys, types

class Anything:
    def __getattr__(self, name):
        return Anything()
    def __call__(self, *args, **kwargs):
        return Anything()
    def __mro_entries__(self, bases):
        return (object,)

class StandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("samna", "samnagui"):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None
    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__getattr__ = lambda name: Anything()
        return module
    def exec_module(self, module):
        pass

sys.meta_path.insert(0, StandIn())
import numpy as np, torch
from sinabs.backend.dynapcnn import DynapcnnNetwork
from asa_snn.chips.speck.sinabs_export import to_sinabs
from asa_snn.convert.graph import load_graph

graph = load_graph(sys.argv[1])
frames = np.load(sys.argv[2])
B, T = frames.shape[:2]
net = DynapcnnNetwork(to_sinabs(graph), input_shape=tuple(graph.input.shape), discretize=False)
weights = {l.name: l.tensors["weight"] for l in graph.layers if "weight" in l.tensors}
names = {}
for index, layer in net.dynapcnn_layers.items():
    kernel = layer.conv_layer.weight.detach().numpy()
    names[index] = next(n for n, w in weights.items() if w.size == kernel.size and np.array_equal(
        w.reshape(kernel.shape), kernel))
with torch.no_grad():
    out = net(torch.from_numpy(frames.astype(np.float32)).flatten(0, 1))
memory = net.memory_summary()
print(json.dumps({
    "destinations": {
        names[k]: [names.get(d, "exit") for d in v] for k, v in net.layer_destination_map.items()
    },
    "memory": {names[k]: [memory["kernel"][k], memory["neuron"][k]] for k in names},
    "order": [names[k] for k in sorted(names)],
    "output": out.reshape(B, T, -1).numpy().tolist(),
}))
"""


def dynapcnn_run(graph: FoldedGraph, frames: np.ndarray, folder: Path) -> dict:
    """Build ``DynapcnnNetwork(to_sinabs(graph), discretize=False)`` and run it on ``frames``
    [B, T, C, H, W] in a subprocess.

    Returns:
        ``destinations``: graph layer -> the layers its core sends to ("exit" for the output),
        as sinabs' ``layer_destination_map``; ``memory``: layer -> [kernel, neuron] words from
        sinabs' ``memory_summary``; ``order``: the layers by sinabs' DynapcnnLayer index (the
        order ``chips/speck/board.py`` reads ``layer2core_map`` in); ``output``: the network's
        output spikes [B, T, K].
    """
    save_graph(graph, folder / "graph")
    np.save(folder / "frames.npy", frames)
    done = subprocess.run(
        [sys.executable, "-c", SINABS_SCRIPT, str(folder / "graph"), str(folder / "frames.npy")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).parents[3],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])
