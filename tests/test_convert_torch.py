"""PyTorch <-> JAX conversion and cross-framework parity for TCPFormer."""

import pathlib
import pickle
import zipfile

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from l2a_jax import checkpointing
from l2a_jax import config_files
from l2a_jax import convert_torch
from l2a_jax import models

torch = pytest.importorskip('torch')

# pylint: disable=g-import-not-at-top,wrong-import-position
from l2a_jax.torch_reference import tcpformer as torch_tcpformer
# pylint: enable=g-import-not-at-top,wrong-import-position

_CONFIGS = config_files.load_sibling(
    str(pathlib.Path(__file__).resolve().parents[1] / 'configs' / 'x.py'),
    'tcpformer_h36m')


# Small programs compiled once each: compile them cheaply.
pytestmark = pytest.mark.usefixtures('one_torch_thread',
                                     'unoptimised_compiles')


def tiny_tcpformer_config(frames=9, scan_layers=True):
  config = _CONFIGS.get_model_config(frames)
  config.depth = 2
  config.dim = 16
  config.num_heads = 2
  config.dim_rep = 24
  # Also the constant local layer scales (not in any checkpoint): a visible
  # value makes the chunked local branch count in the comparisons.
  config.layer_scale_init = 0.2
  config.scan_layers = scan_layers
  return config


def randomize_constant_parameters(model, seed):
  """Gives every constant-initialised parameter (zeros, ones, layer scales,
  fusion 0 / 0.5) random values, so no path is inert in a comparison."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, p in model.named_parameters():
      if p.numel() > 1 and not torch.all(p == p.reshape(-1)[0]):
        continue
      noise = torch.rand(p.shape, generator=generator)
      if 'layer_scale' in name:
        p.copy_(0.05 + 0.25 * noise)
      else:
        p.add_(0.2 * (noise - 0.5))
  return model


def torch_model(config, seed=0):
  torch.manual_seed(seed)
  model = torch_tcpformer.TCPFormer.from_config(config)
  return randomize_constant_parameters(model, seed).eval()


def state_dict_numpy(model):
  return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def jax_model_from_torch(config, model):
  """The JAX model of `config` carrying `model`'s weights."""
  abstract = models.abstract_model(config)
  params = convert_torch.torch_to_jax(
      state_dict_numpy(model), convert_torch.abstract_params_of(abstract),
      convert_torch.stacked_modules_of(abstract))
  return convert_torch.model_from_params(config, params)


def jax_forward(model, x):
  """Deterministic forward under jit (op-by-op dispatch is far slower)."""
  graphdef, state = nnx.split(model)
  return np.asarray(
      jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))(state, x))


def inputs(shape, seed=0):
  return np.random.RandomState(seed).randn(*shape).astype(np.float32)


@pytest.mark.parametrize('scan_layers', [True, False])
def test_forward_parity_small(scan_layers):
  config = tiny_tcpformer_config(scan_layers=scan_layers)
  model = torch_model(config)
  x = inputs((2, 9, 17, 3))
  with torch.no_grad():
    expected = model(torch.from_numpy(x)).numpy()
  got = jax_forward(jax_model_from_torch(config, model), x)
  assert got.shape == (2, 9, 17, 3)
  assert np.abs(expected).max() > 0.1  # a non-trivial output
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def relative_error(got, expected):
  return np.abs(got - expected).max() / np.abs(expected).max()


def test_gradient_parity_inputs_and_every_parameter():
  config = tiny_tcpformer_config()
  model = torch_model(config, seed=1)
  x = inputs((2, 9, 17, 3), seed=1)
  weights = inputs((2, 9, 17, 3), seed=2)

  x_torch = torch.from_numpy(x).requires_grad_()
  (model(x_torch) * torch.from_numpy(weights)).sum().backward()
  torch_grads = {n: p.grad.numpy() for n, p in model.named_parameters()}

  jax_model = jax_model_from_torch(config, model)
  graphdef, params, rest = nnx.split(jax_model, nnx.Param, ...)

  def loss(params, x):
    return jnp.sum(nnx.merge(graphdef, params, rest)(x) * weights)

  param_grads, input_grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(
      params, x)
  assert relative_error(np.asarray(input_grads), x_torch.grad.numpy()) < 1e-4
  jax_grads = convert_torch.jax_to_torch(
      nnx.to_pure_dict(param_grads),
      convert_torch.stacked_modules_of(jax_model))
  assert set(jax_grads) == set(torch_grads)
  for name, expected in torch_grads.items():
    assert np.abs(expected).max() > 0, name  # every parameter is live
    assert relative_error(jax_grads[name], expected) < 1e-4, name


def test_full_size_tcpformer_t81_forward_parity():
  config = _CONFIGS.get_model_config(81)
  torch.manual_seed(2)
  model = torch_tcpformer.TCPFormer.from_config(config).eval()
  # Visible (not 1e-5) trainable layer scales and embeddings, scaled so 16
  # layer pairs keep the activations in a sane range.
  with torch.no_grad():
    for name, p in model.named_parameters():
      if 'layer_scale' in name:
        p.uniform_(0.02, 0.1)
      elif 'pos_embed' in name or 'fusion.weight' in name:
        p.normal_(0.0, 0.1)
  x = inputs((1, 81, 17, 3), seed=3)
  with torch.no_grad():
    expected = model(torch.from_numpy(x)).numpy()
  got = jax_forward(jax_model_from_torch(config, model), x)
  assert np.abs(expected).max() > 0.1
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_round_trip_in_memory_is_bit_exact():
  config = tiny_tcpformer_config()
  model = torch_model(config)
  state_dict = state_dict_numpy(model)
  jax_model = models.abstract_model(config)
  stacked = convert_torch.stacked_modules_of(jax_model)
  params = convert_torch.torch_to_jax(
      state_dict, convert_torch.abstract_params_of(jax_model), stacked)
  # Scanned layout: per-layer torch keys become one stacked leaf.
  assert params['layers']['att_spatial']['mixer']['qkv']['kernel'].shape == (
      2, 16, 48)
  np.testing.assert_array_equal(
      params['layers']['att_spatial']['mixer']['qkv']['kernel'][1],
      state_dict['layers.1.att_spatial.mixer.qkv.weight'].T)
  back = convert_torch.jax_to_torch(params, stacked)
  assert set(back) == set(state_dict)
  for key, value in state_dict.items():
    assert back[key].dtype == value.dtype
    np.testing.assert_array_equal(back[key], value, err_msg=key)


def _save_official(model, path, epoch=12):
  torch.save({
      'epoch': epoch, 'lr': 4e-4, 'optimizer': {'state': {}},
      'model': {'module.' + k: v for k, v in model.state_dict().items()},
      'min_mpjpe': np.float64(41.25), 'wandb_id': 'run1'}, path)


def test_round_trip_through_orbax_is_bit_exact(tmp_path):
  config = tiny_tcpformer_config()
  model = torch_model(config, seed=4)
  _save_official(model, tmp_path / 'official.pth.tr')
  step_dir = convert_torch.convert_to_jax(
      config, tmp_path / 'official.pth.tr', tmp_path / 'work')
  assert step_dir.name == '0'
  _, meta = checkpointing.restore_params(tmp_path / 'work')
  assert meta['model']['num_frames'] == 9
  assert meta['converted_from']['epoch'] == 12
  assert meta['converted_from']['min_mpjpe'] == 41.25
  written = convert_torch.convert_to_torch(config, tmp_path / 'work',
                                           tmp_path / 'back.pt')
  loaded = torch.load(tmp_path / 'back.pt', weights_only=True)
  original = model.state_dict()
  assert list(loaded) == list(original) == list(written)  # official order
  for key, value in original.items():
    assert torch.equal(loaded[key], value), key
  fresh = torch_tcpformer.TCPFormer.from_config(config)
  fresh.load_state_dict(loaded, strict=True)


def test_unrolled_and_scanned_checkpoints_hold_the_same_tensors(tmp_path):
  model = torch_model(tiny_tcpformer_config(), seed=5)
  _save_official(model, tmp_path / 'official.pth.tr')
  for scan in (True, False):
    config = tiny_tcpformer_config(scan_layers=scan)
    convert_torch.convert_to_jax(config, tmp_path / 'official.pth.tr',
                                 tmp_path / f'work_{scan}')
    convert_torch.convert_to_torch(config, tmp_path / f'work_{scan}',
                                   tmp_path / f'back_{scan}.pt')
  a = torch.load(tmp_path / 'back_True.pt', weights_only=True)
  b = torch.load(tmp_path / 'back_False.pt', weights_only=True)
  assert all(torch.equal(a[k], b[k]) for k in a)


def test_mismatch_lists_missing_unexpected_and_misshaped_keys():
  config = tiny_tcpformer_config()
  jax_model = models.abstract_model(config)
  abstract = convert_torch.abstract_params_of(jax_model)
  stacked = convert_torch.stacked_modules_of(jax_model)
  state_dict = state_dict_numpy(torch_model(config))
  del state_dict['head.bias']
  state_dict['extra.weight'] = np.zeros((3, 3), np.float32)
  state_dict['layers.1.fusion.weight'] = np.zeros((2, 30), np.float32)
  with pytest.raises(convert_torch.ConversionError) as error:
    convert_torch.torch_to_jax(state_dict, abstract, stacked, source='ck.pt')
  message = str(error.value)
  assert '\n' not in message
  assert message.startswith('ck.pt does not match the model config')
  assert 'missing 1: head.bias' in message
  assert 'unexpected 1: extra.weight' in message
  assert 'layers.1.fusion.weight (2, 30) vs (2, 32)' in message


def test_wrong_frame_count_gets_a_hint():
  state_dict = state_dict_numpy(torch_model(tiny_tcpformer_config(frames=9)))
  config = tiny_tcpformer_config(frames=27)
  jax_model = models.abstract_model(config)
  with pytest.raises(convert_torch.ConversionError, match=':frames=9'):
    convert_torch.torch_to_jax(
        state_dict, convert_torch.abstract_params_of(jax_model),
        convert_torch.stacked_modules_of(jax_model), model_config=config)


def test_reads_bare_state_dict_and_rejects_other_files(tmp_path):
  model = torch_model(tiny_tcpformer_config())
  torch.save(model.state_dict(), tmp_path / 'bare.pt')
  state_dict, info = convert_torch.read_torch_checkpoint(tmp_path / 'bare.pt')
  assert info == {}
  assert set(state_dict) == set(model.state_dict())

  torch.save({'model': {'a': 1.5}}, tmp_path / 'not_tensors.pt')
  with pytest.raises(convert_torch.ConversionError, match="'a' is a float"):
    convert_torch.read_torch_checkpoint(tmp_path / 'not_tensors.pt')

  (tmp_path / 'text.pt').write_text('hello')
  with pytest.raises(convert_torch.ConversionError, match='weights_only'):
    convert_torch.read_torch_checkpoint(tmp_path / 'text.pt')

  with pytest.raises(FileNotFoundError):
    convert_torch.read_torch_checkpoint(tmp_path / 'absent.pt')


def test_reads_numpy_scalars_pickled_by_numpy_1(tmp_path):
  """Official checkpoints store `min_mpjpe` as a NumPy scalar; files written
  with NumPy 1.x name its constructor `numpy.core.multiarray.scalar`."""
  torch.save({'model': {'module.w': torch.ones(2)},
              'min_mpjpe': np.float64(38.5)}, tmp_path / 'new.pth')
  with zipfile.ZipFile(tmp_path / 'new.pth') as source, zipfile.ZipFile(
      tmp_path / 'old.pth', 'w') as target:
    for name in source.namelist():
      data = source.read(name)
      if name.endswith('data.pkl'):
        assert b'numpy._core.multiarray' in data
        data = data.replace(b'numpy._core.multiarray',
                            b'numpy.core.multiarray')
      target.writestr(name, data)
  state_dict, info = convert_torch.read_torch_checkpoint(tmp_path / 'old.pth')
  assert info == {'min_mpjpe': 38.5}
  np.testing.assert_array_equal(state_dict['w'], np.ones(2, np.float32))


class _Payload:
  """Unpickling this would call `_MARK.append` (code execution)."""

  def __reduce__(self):
    return (_MARK.append, ('executed',))


_MARK = []


def test_never_executes_pickled_code(tmp_path):
  with open(tmp_path / 'evil.pt', 'wb') as f:
    pickle.dump({'model': {'x': _Payload()}}, f)
  with pytest.raises(convert_torch.ConversionError, match='weights_only'):
    convert_torch.read_torch_checkpoint(tmp_path / 'evil.pt')
  assert not _MARK


def test_refuses_a_workdir_with_checkpoints(tmp_path):
  config = tiny_tcpformer_config()
  _save_official(torch_model(config), tmp_path / 'official.pth.tr')
  convert_torch.convert_to_jax(config, tmp_path / 'official.pth.tr',
                               tmp_path / 'work')
  with pytest.raises(FileExistsError, match='not empty'):
    convert_torch.convert_to_jax(config, tmp_path / 'official.pth.tr',
                                 tmp_path / 'work')
