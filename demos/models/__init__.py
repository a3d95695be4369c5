"""Small reference models used by the demos and the model tests (all plain JAX/flax)."""
