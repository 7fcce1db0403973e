"""l2a_jax: L2A and TCPFormer 3D human pose lifting in JAX/Flax NNX."""

__version__ = '0.1.0'
