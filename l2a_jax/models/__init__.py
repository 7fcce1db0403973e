"""Model constructors: `create_model(model_config, rngs)`."""

from flax import nnx
import ml_collections


def create_model(model_config: ml_collections.ConfigDict,
                 rngs: nnx.Rngs) -> nnx.Module:
  """Builds the model named by `model_config.name`.

  Args:
    model_config: the `config.model` section ('l2a' | 'tcpformer').
    rngs: NNX RNG streams; `params` initialises the weights.

  Returns:
    An `nnx.Module` mapping `[batch, frames, joints, dim_in]` to
    `[batch, frames, joints, dim_out]` (call `model(x, dropout_rng=None)`).
  """
  # Imported here so that loading one model never imports the other.
  if model_config.name == 'l2a':
    from l2a_jax.models import l2a  # pylint: disable=g-import-not-at-top
    return l2a.L2A(model_config, rngs=rngs)
  if model_config.name == 'tcpformer':
    from l2a_jax.models import tcpformer  # pylint: disable=g-import-not-at-top
    return tcpformer.TCPFormer(model_config, rngs=rngs)
  raise ValueError(
      f"model.name: expected 'l2a' | 'tcpformer', got {model_config.name!r}")
