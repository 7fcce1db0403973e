"""Helpers for tests that read traced programs (not a test module itself).

- `all_eqns`: every equation of a jaxpr, those of nested jaxprs (jit,
  checkpoint, custom_vjp, scan bodies) included.
"""

import jax
import jax.extend


def all_eqns(jaxpr):
  """Every equation of `jaxpr` (a `Jaxpr`), nested ones too."""
  for eqn in jaxpr.eqns:
    yield eqn
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      yield from all_eqns(sub)
