"""Training and export toolchain (needs the ``train`` extra for training)."""
