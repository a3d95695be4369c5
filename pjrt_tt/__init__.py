"""pjrt-tt: a PJRT plugin that runs JAX and PyTorch programs on Tenstorrent chips."""
