"""Every shipped config's step split on 1, 8 and 64 devices (arithmetic only).

`run_setup.batch_split` picks the gradient accumulation from a per-device
bound; the configs are loaded (not run) and their global batch, the
micro-batch count and the rows per device are checked for each device
count. A global batch smaller than the device count cannot be split and is
refused with a one-line hint; the large-batch config covers 64 devices.
"""

import pathlib

import pytest

from l2a_jax import cli
from l2a_jax import run_setup

_CONFIGS = pathlib.Path(__file__).resolve().parent.parent / 'configs'
# (config spec, {devices: expected accumulation}); None = refused.
_EXPECTED = [
    ('tiny.py', {1: 1, 8: 1, 64: None}),
    ('quickstart.py', {1: 1, 8: 1, 64: None}),
    ('l2a_h36m.py', {1: 1, 8: 1, 64: None}),
    ('l2a_h36m.py:frames=81', {1: 1, 8: 1, 64: None}),
    ('l2a_3dhp.py', {1: 1, 8: 1, 64: None}),
    # Official recipe: 4 x 4 at T=243, 8 x 2 at T=81 on one device.
    ('tcpformer_h36m.py', {1: 4, 8: 1, 64: None}),
    ('tcpformer_h36m.py:frames=81', {1: 2, 8: 1, 64: None}),
    ('tcpformer_3dhp.py', {1: 1, 8: 1, 64: None}),
    ('large_batch.py', {1: 32, 8: 4, 64: 1}),
    ('large_batch.py:batch=4096', {1: 128, 8: 16, 64: 2}),
]


def _config(spec):
  return cli.load_config_file(str(_CONFIGS / spec))


@pytest.mark.parametrize('spec, expected', _EXPECTED,
                         ids=[spec for spec, _ in _EXPECTED])
def test_shipped_configs_split_on_1_8_64_devices(spec, expected):
  config = _config(spec)
  batch = int(config.data.batch_size)
  bound = int(config.optim.max_per_device_batch)
  for devices, accumulation in expected.items():
    if accumulation is None:
      assert batch < devices
      with pytest.raises(ValueError, match='fewer rows than devices'):
        run_setup.batch_split(batch, devices, config.optim.accumulation_steps,
                              bound)
      continue
    got = run_setup.batch_split(batch, devices,
                                int(config.optim.accumulation_steps), bound)
    assert got == accumulation, (devices, got)
    per_device = batch // (got * devices)
    assert per_device * got * devices == batch
    assert bound == 0 or per_device <= bound


def test_fixed_accumulation_is_checked_against_devices():
  assert run_setup.batch_split(16, 1, 4, 0) == 4
  with pytest.raises(ValueError, match=r'accumulation_steps x devices = 4 x 8'):
    run_setup.batch_split(16, 8, 4, 0)
  with pytest.raises(ValueError, match=r'>= 1 or -1'):
    run_setup.batch_split(16, 1, 0, 0)
  # Auto with a bound that no split meets exactly: the smallest count whose
  # micro-batch fits (12 rows per device, bound 5 -> 3 x 4).
  assert run_setup.batch_split(96, 8, -1, 5) == 3
