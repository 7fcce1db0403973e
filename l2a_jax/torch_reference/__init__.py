"""PyTorch reference implementations of TCPFormer and L2A.

Imported only by `l2a_jax.convert_torch`, the benchmark and the tests, never by
the JAX core: `import l2a_jax` does not need torch. Device agnostic: build a
model, then `.to(device)`.

`create_model(model_config)` mirrors `l2a_jax.models.create_model`: the same
`config.model` section builds the PyTorch twin of the JAX model, whose
state_dict keys follow the parameter naming rule of docs/architecture.md.
"""

import ml_collections
from torch import nn


def create_model(model_config: ml_collections.ConfigDict) -> nn.Module:
  """Builds the PyTorch model named by `model_config.name`.

  Args:
    model_config: the `config.model` section ('l2a' or 'tcpformer').

  Returns:
    A float32 `nn.Module` on the CPU, in training mode (call `.eval()` for
    inference); `model(x)` maps `[batch, frames, joints, dim_in]` to
    `[batch, frames, joints, dim_out]`.
  """
  # Imported here so that building one model does not import the other.
  if model_config.name == 'tcpformer':
    from l2a_jax.torch_reference import tcpformer
    return tcpformer.TCPFormer.from_config(model_config)
  if model_config.name == 'l2a':
    from l2a_jax.torch_reference import l2a
    return l2a.L2A.from_config(model_config)
  raise ValueError(
      f"model.name: expected 'l2a' or 'tcpformer', got {model_config.name!r}")
