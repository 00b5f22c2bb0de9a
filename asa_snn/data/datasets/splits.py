"""Deterministic stratified hold-out split for validation sets."""

from __future__ import annotations

import numpy as np

from asa_snn.errors import AsaSnnError, InputFormatError


def split_indices(labels: np.ndarray, val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Split sample indices into training and validation parts with the same class proportions.

    For every class c with n_c samples (classes in increasing order), the class's indices are
    shuffled with ``numpy.random.default_rng(seed)`` and the first
    ``v_c = min(round(val_fraction * n_c), n_c - 1)`` go to validation, so each class keeps at
    least one training sample. The same ``labels``, ``val_fraction`` and ``seed`` always give the
    same split.

    Args:
        labels: integer class labels, shape [N].
        val_fraction: share of each class held out, 0 <= val_fraction < 1.
        seed: seed of the shuffle.

    Returns:
        (train_idx, val_idx): sorted int64 index arrays, disjoint, together ``0 .. N - 1``.

    Raises:
        AsaSnnError: ``val_fraction`` outside [0, 1).
        InputFormatError: ``labels`` is not a 1-D integer array.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise AsaSnnError(f"split_indices: val_fraction={val_fraction}, expected 0 <= val_fraction < 1")
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise InputFormatError(
            "split_indices: labels must be a 1-D integer array, "
            f"got shape {labels.shape} dtype {labels.dtype}"
        )
    rng = np.random.default_rng(seed)
    val_parts = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        count = min(round(val_fraction * len(members)), len(members) - 1)
        val_parts.append(rng.permutation(members)[:count])
    val_idx = np.sort(np.concatenate(val_parts)) if val_parts else np.zeros(0, dtype=np.int64)
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask).astype(np.int64), val_idx.astype(np.int64)
