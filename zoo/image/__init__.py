"""Image tokenizers: ``[B, 3, H, W]`` in ``[0, 1]`` -> token grids."""
