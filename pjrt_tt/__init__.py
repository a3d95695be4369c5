"""pjrt-tt: a PJRT plugin that runs JAX and PyTorch programs on Tenstorrent chips."""

__version__ = "0.1.0"   # as pyproject.toml; in the platform version and in serialized executables
