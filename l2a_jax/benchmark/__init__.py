"""JAX vs PyTorch speed, memory, MACs and MFU: `python -m l2a_jax.benchmark`.

Modules (imports point down this list, never up):

- `cli`: the command line (`__main__` runs it): configs, overrides, one
  worker process per measurement, tables, JSON, plot;
- `worker`: one measurement in a process of its own
  (`python -m l2a_jax.benchmark.worker SPEC.json RESULT.json`);
- `jax_side`, `torch_side`: the training / inference steps of each framework;
- `profiling`: framework profilers, top operations per step;
- `plot`: the PNG (`python -m l2a_jax.benchmark.plot`);
- `macs`: the jaxpr MAC counter (device peaks for MFU: `l2a_jax.hardware`,
  shared with the trainer's throughput log);
- `l2a_costs`: L2A compile time / memory against depth
  (`python -m l2a_jax.benchmark.l2a_costs`);
- `common`: helpers the others share (spec keys, synthetic batch, timer,
  atomic JSON), importing nothing of this package.

Nothing outside this package imports it; `l2a_jax.models` never does.
"""
