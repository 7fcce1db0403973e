"""Pose data: TFDS builders (no TensorFlow), BVH import, synthetic motion and
the grain input pipeline. See docs/data.md.

Modules are imported explicitly (`from l2a_jax.data import input_pipeline`);
this package imports nothing itself, so `import l2a_jax.data.skeleton` stays
light.
"""
