"""Labelled event datasets (tonic-like ``torch.utils.data.Dataset`` classes) and split helpers.

Every dataset takes ``(root, split=..., transform=None)``, never downloads, and exposes
``sensor_size`` (W, H, P), ``classes``, ``files`` (sample ids) and ``labels`` (int64 [N], known
without decoding the recordings). Item ``i`` is ``(transform(sample) or sample, label)``.
"""

from asa_snn.data.datasets._base import LabelledDataset
from asa_snn.data.datasets.daily_action import DailyActionDVS
from asa_snn.data.datasets.folder import EventFolder
from asa_snn.data.datasets.gait import DVSGait
from asa_snn.data.datasets.gesture import DVSGesture
from asa_snn.data.datasets.hardvs import HARDVS
from asa_snn.data.datasets.nmnist import NMNIST
from asa_snn.data.datasets.splits import split_indices

__all__ = [
    "HARDVS",
    "NMNIST",
    "DVSGait",
    "DVSGesture",
    "DailyActionDVS",
    "EventFolder",
    "LabelledDataset",
    "split_indices",
]
