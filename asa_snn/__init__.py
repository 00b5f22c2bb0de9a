"""asa-snn: train spiking networks with Advanced Spatial Attention and deploy them to neuromorphic chips.

Stages, each a subpackage that imports only from the stages before it::

    data -> models -> train / analysis ; convert -> simulators -> deploy ; cli
"""

__version__ = "0.1.0"
