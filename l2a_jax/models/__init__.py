"""Model constructors: `create_model(model_config, rngs)` and
`abstract_model(model_config)` (shapes only)."""

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


def abstract_model(model_config: ml_collections.ConfigDict) -> nnx.Module:
  """The model of `model_config` with shapes only (nothing allocated).

  The one way every part of the package (training, evaluation, the
  converter, the benchmark and its MAC counter) builds a model it only needs
  the structure of: `nnx.eval_shape` over `create_model`, so a full-size
  config costs only tracing time.

  Args:
    model_config: the `config.model` section ('l2a' | 'tcpformer').

  Returns:
    The `nnx.Module` whose parameters and constants are
    `jax.ShapeDtypeStruct`s; split it with `nnx.split(model, nnx.Param,
    ...)` for `(graphdef, params, rest)`.
  """
  return nnx.eval_shape(lambda: create_model(model_config, nnx.Rngs(0)))
