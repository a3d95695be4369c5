"""A ResNet-style CNN and a ViT-style classifier in flax, for random-weight tests."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class ResidualBlock(nn.Module):
    channels: int
    stride: int = 1

    @nn.compact
    def __call__(self, x):
        h = nn.Conv(self.channels, (3, 3), strides=self.stride, padding="SAME", use_bias=False)(x)
        h = nn.relu(nn.GroupNorm(num_groups=4)(h))
        h = nn.Conv(self.channels, (3, 3), padding="SAME", use_bias=False)(h)
        h = nn.GroupNorm(num_groups=4)(h)
        if x.shape[-1] != self.channels or self.stride != 1:
            x = nn.Conv(self.channels, (1, 1), strides=self.stride, use_bias=False)(x)
        return nn.relu(x + h)


class ResNet(nn.Module):
    classes: int = 10

    @nn.compact
    def __call__(self, x):  # x: (B, H, W, C) NHWC
        x = nn.relu(nn.Conv(16, (3, 3), padding="SAME")(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        for channels, stride in ((16, 1), (32, 2), (64, 2)):
            x = ResidualBlock(channels, stride)(x)
        return nn.Dense(self.classes)(x.mean(axis=(1, 2)))


class ViT(nn.Module):
    patch: int = 4
    dim: int = 64
    heads: int = 4
    layers: int = 2
    classes: int = 10

    @nn.compact
    def __call__(self, x):  # x: (B, H, W, C)
        x = nn.Conv(self.dim, (self.patch, self.patch), strides=self.patch)(x)  # patch embedding
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)
        cls = self.param("cls", nn.initializers.normal(0.02), (1, 1, d))
        x = jnp.concatenate([jnp.broadcast_to(cls, (b, 1, d)), x], axis=1)
        x = x + self.param("pos", nn.initializers.normal(0.02), (1, h * w + 1, d))
        for _ in range(self.layers):
            y = nn.LayerNorm()(x)
            x = x + nn.MultiHeadDotProductAttention(num_heads=self.heads)(y, y)
            y = nn.LayerNorm()(x)
            x = x + nn.Dense(d)(nn.gelu(nn.Dense(4 * d)(y)))
        return nn.Dense(self.classes)(nn.LayerNorm()(x[:, 0]))


def init(model: nn.Module, image_shape=(2, 32, 32, 3), seed: int = 0):
    with jax.default_device(jax.devices("cpu")[0]):  # initialisation is host-side setup
        params = model.init(jax.random.PRNGKey(seed), jnp.zeros(image_shape))
    return jax.tree.map(np.asarray, params)
