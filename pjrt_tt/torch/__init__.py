"""PyTorch support: the torch_xla device plugin (PJRT_DEVICE=TT) and the dynamo backend "tt".

Nothing here imports torch at package import time, so `import pjrt_tt` stays torch-free.
"""
