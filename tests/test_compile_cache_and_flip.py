"""Trainer's persistent compilation cache; flip TTA as one batch.

- `run_setup.compilation_cache_dir`: 'auto' (and an absent field) under
  ~/.cache, '' off, relative paths from the workdir; turning it on makes a
  fresh process write XLA executables there;
- `evaluate.predict(..., flip_test=True)` (clips and mirrors in one model
  call) equals the two-pass formula 0.5 (f(x) + flip(f(flip(x)))).
"""

import os
import subprocess
import sys
import textwrap

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import l2a_testing
import tcpformer_testing as tt
from l2a_jax import evaluate
from l2a_jax import models
from l2a_jax import run_setup
from l2a_jax.data import skeleton as skeleton_lib


def _config(**train):
  return ml_collections.ConfigDict({'train': train})


def test_cache_directory_choices(tmp_path, monkeypatch):
  monkeypatch.setenv('HOME', str(tmp_path / 'home'))
  workdir = str(tmp_path / 'runs' / 'run1')
  auto = str(tmp_path / 'home' / '.cache' / 'l2a_jax' /
             'jax_compilation_cache')
  assert run_setup.compilation_cache_dir(
      _config(compilation_cache_dir='auto'), workdir) == auto
  assert run_setup.compilation_cache_dir(_config(), workdir) == auto
  assert run_setup.compilation_cache_dir(
      _config(compilation_cache_dir=''), workdir) is None
  assert run_setup.compilation_cache_dir(
      _config(compilation_cache_dir='../xla'), workdir) == str(
          tmp_path / 'runs' / 'xla')
  assert run_setup.compilation_cache_dir(
      _config(compilation_cache_dir='/abs/cache'), workdir) == '/abs/cache'
  assert run_setup.compilation_cache_dir(
      _config(compilation_cache_dir='gs://b/c'), workdir) == 'gs://b/c'


def test_enabled_cache_receives_compiled_programs(tmp_path):
  script = textwrap.dedent(f'''
      import jax, ml_collections
      from l2a_jax import run_setup
      jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
      config = ml_collections.ConfigDict(
          {{'train': {{'compilation_cache_dir': '../cache'}}}})
      run_setup.enable_compilation_cache(config, {str(tmp_path / 'run')!r})
      jax.jit(lambda x: jax.numpy.sin(x) * 3)(jax.numpy.ones(7)).block_until_ready()
      ''')
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  env.pop('JAX_COMPILATION_CACHE_DIR', None)  # tests/conftest.py's.
  subprocess.run([sys.executable, '-c', script], check=True, timeout=300,
                 env=env)
  assert os.listdir(tmp_path / 'cache')


def _two_pass(model, x, skeleton):
  pred = model(x)
  mirrored = model(evaluate.flip_poses(x, skeleton))
  return 0.5 * (pred + evaluate.flip_poses(mirrored, skeleton))


# One program compiled and run once: compile it cheaply.
@pytest.mark.usefixtures('unoptimised_compiles')
def test_flip_tta_in_one_batch_equals_two_passes():
  skeleton = skeleton_lib.get('h36m')
  for cfg in (tt.tiny_config(), l2a_testing.model_config()):
    graphdef, state = nnx.split(models.create_model(cfg, nnx.Rngs(0)))

    # Jitted, as in the evaluation step (and one compilation instead of
    # op-by-op dispatch); the three results are separate model calls.
    @jax.jit
    def run(state, x, graphdef=graphdef):
      model = nnx.merge(graphdef, state)
      return (evaluate.predict(model, x, skeleton, flip_test=True),
              _two_pass(model, x, skeleton), model(x))

    x = jnp.asarray(np.random.default_rng(0).standard_normal(
        (3, cfg.num_frames, 17, 3)).astype(np.float32))
    got, want, plain = run(state, x)
    assert got.shape == (3, cfg.num_frames, 17, 3)
    # Flipping matters (the test could fail): TTA differs from f(x).
    assert float(jnp.abs(want - plain).max()) > 1e-4
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
