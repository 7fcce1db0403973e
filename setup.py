"""Packaging for l2a_jax: JAX/Flax L2A and TCPFormer 3D human pose lifting."""

import setuptools

setuptools.setup(
    name='l2a_jax',
    version='0.1.0',
    description=(
        'JAX/Flax (NNX) implementations of the L2A and TCPFormer 2D-to-3D '
        'human pose lifting Transformers, with a PyTorch reference.'
    ),
    python_requires='>=3.10',
    packages=setuptools.find_packages(include=['l2a_jax', 'l2a_jax.*']),
    install_requires=[
        'absl-py',
        'clu',
        'etils',
        'flax>=0.12',
        'grain>=0.2.12',
        'imageio',
        'jax>=0.8',
        'matplotlib',
        'ml-collections>=1.0',
        'numpy',
        'optax',
        'orbax-checkpoint>=0.11',
        'tensorflow-datasets>=4.9.7',
        'tqdm',
    ],
    extras_require={
        # Install torch==2.13.0 explicitly *before* this extra (see README):
        # an unpinned resolve may pull a multi-GB CUDA build.
        'torch': ['torch'],
        # MP4 renders and --video backgrounds of `predict`.
        'video': ['imageio-ffmpeg'],
        # The tests render MP4s too, so they need the [video] plugin.
        # tensorboardX: an independent reader of our TensorBoard event files.
        'test': ['pytest', 'pytest-xdist', 'chex', 'hypothesis',
                 'imageio-ffmpeg', 'tensorboardX', 'torch'],
    },
)
