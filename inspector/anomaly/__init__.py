"""Good-only (anomaly) inspection: PatchCore on EfficientNet-Lite0 features, in OpenVINO and numpy, no torch.

- `torch_legacy`: the restricted reader of the backbone's legacy PyTorch weights (tensors only, never code).
- `backbone`: EfficientNet-Lite0 built op by op for OpenVINO, truncated at the feature taps, cached.
- `patchcore`: greedy coreset and nearest-neighbour distances in numpy.
- `runtime`: `AnomalyScorer`, one graph from letterboxed u8 frames to patch scores (threshold = 1.0).
- `model`: model folders (``card.toml`` with ``kind = "anomaly"``, ``memory_bank.npy``), sha256-checked.
- `threshold`: the threshold rule from the good images' cross-validated scores, refined with NG ones.
- `teach`: teach, score and evaluate, as the command line runs them.
"""
