"""Pretrained weights on the host: import (convert) checkpoints to canonical .npz, the store, checks.

- `convert`: a PyTorch state dict (`torch.load(weights_only=True)`, torch imported lazily inside
  the command) or a Keras `.weights.h5` (h5py) -> canonical tensors (runner's names, PyTorch
  layouts, float32).
- `store`: where imported weights live: `<data-root>/weights/<sha256>.npz`, content-addressed,
  written atomically, never overwritten; a spec pins the sha256 and the store finds the file.
- `check`: before any run starts, the pinned file is hashed and checked against every run's model.

See docs/models.md "Pretrained weights".
"""
