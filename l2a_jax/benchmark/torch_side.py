"""PyTorch side of the benchmark: the reference models, eager and compiled.

The training step matches the JAX one: forward, the same loss (MPJPE + 0.5
N-MPJPE + 20 velocity), backward, `torch.optim.AdamW` (fused on CUDA, the
fastest built-in implementation). bfloat16 runs use `torch.autocast` with
float32 parameters (the usual PyTorch mixed precision; the JAX models keep
float32 parameters and compute in bfloat16, with norms and softmax in
float32). 'torch_compile' wraps the forward + loss in `torch.compile`
(default inductor mode); its first step, which compiles forward and
backward, is reported as compile_s.

Memory: `torch.cuda.max_memory_allocated` on CUDA. A CPU has no device
allocator statistics, so on CPU the eager training step also reports
`autograd_saved_bytes`: the bytes of the distinct tensors autograd saves for
the backward pass (via `torch.autograd.graph.saved_tensors_hooks`, parameters
excluded) -- the activation memory of the step, a proxy, not a peak.

Device agnostic: CUDA when available, else CPU. Called by
`l2a_jax.benchmark.worker` in a process of its own.
"""

from __future__ import annotations

import contextlib
from typing import Any

import ml_collections
import torch
from torch.utils import flop_counter

from l2a_jax import torch_reference
from l2a_jax.benchmark import common
from l2a_jax.benchmark import linear_products
from l2a_jax.benchmark import profiling


def torch_loss(pred: torch.Tensor, target: torch.Tensor,
               weights: dict[str, float]) -> torch.Tensor:
  """MPJPE + N-MPJPE + velocity terms, as `l2a_jax.losses` (float32).

  Args:
    pred: `[batch, frames, joints, 3]`.
    target: same shape.
    weights: 'mpjpe', 'n_mpjpe' and 'velocity' weights (config.loss).
  """
  pred = pred.float()

  def mpjpe(p, t):
    return torch.linalg.vector_norm(p - t, dim=-1).mean()

  pred_sq = (pred * pred).sum(-1, keepdim=True).mean(-2, keepdim=True)
  cross = (target * pred).sum(-1, keepdim=True).mean(-2, keepdim=True)
  scale = cross / pred_sq.clamp_min(torch.finfo(torch.float32).tiny)
  loss = weights['mpjpe'] * mpjpe(pred, target)
  loss = loss + weights['n_mpjpe'] * mpjpe(scale * pred, target)
  if pred.shape[1] > 1:
    loss = loss + weights['velocity'] * mpjpe(pred[:, 1:] - pred[:, :-1],
                                              target[:, 1:] - target[:, :-1])
  return loss


def device_and_sync() -> tuple[torch.device, Any]:
  """The device to run on and a function that waits for its queued work."""
  if torch.cuda.is_available():
    return torch.device('cuda'), lambda _: torch.cuda.synchronize()
  # CPU operators run synchronously: nothing to wait for.
  return torch.device('cpu'), lambda _: None


def configure(spec: dict[str, Any]) -> None:
  """float32 matmul precision and CPU threads of the spec.

  float32 matmuls: 'highest' (IEEE, PyTorch's default) or 'tf32' (TF32
  tensor cores).
  """
  torch.set_float32_matmul_precision(
      {'highest': 'highest', 'tf32': 'high'}[spec['fp32_matmul']])
  if spec.get('torch_threads', 0) > 0:
    torch.set_num_threads(spec['torch_threads'])


def device_description(device: torch.device) -> dict[str, Any]:
  """The torch device, CUDA version and thread count."""
  name = (torch.cuda.get_device_name(device) if device.type == 'cuda'
          else 'cpu')
  return {
      'device': device.type,
      'name': name,
      'cuda': torch.version.cuda,
      'threads': torch.get_num_threads(),
  }


def build_model(spec: dict[str, Any], device: torch.device,
                **changes: Any) -> torch.nn.Module:
  """The PyTorch twin of the spec's model on `device` (float32 weights)."""
  torch.manual_seed(spec['seed'])
  model_config = dict(spec['model'])
  model_config.update(changes)
  return torch_reference.create_model(
      ml_collections.ConfigDict(model_config)).to(device)


def _autocast(device: torch.device, dtype: str):
  return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                        enabled=dtype == 'bfloat16')


def saved_activation_bytes(model: torch.nn.Module, run_backward) -> int:
  """Bytes of the distinct tensors autograd saves during one forward.

  Args:
    model: its parameters are excluded (they are not activations).
    run_backward: computes the loss under the hooks and returns it; the
      backward pass is run here to free the saved tensors.

  Returns:
    Total bytes of the distinct storages saved for backward.
  """
  param_storages = {p.untyped_storage().data_ptr()
                    for p in model.parameters()}
  storages = {}

  def pack(tensor):
    storage = tensor.untyped_storage()
    ptr = storage.data_ptr()
    if ptr not in param_storages:
      storages[ptr] = storage.nbytes()
    return tensor

  with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
    loss = run_backward()
  loss.backward()
  return int(sum(storages.values()))


def count_flops(model: torch.nn.Module, inputs: torch.Tensor
                ) -> dict[str, int]:
  """MACs of one forward by `torch.utils.flop_counter` (a cross-check).

  FlopCounterMode counts matrix products (mm, addmm, bmm, attention
  kernels); FLOPs / 2 = MACs. The CPU fused attention kernel is not in its
  table in torch 2.13, so it is added with torch's own SDPA formula. `mm`
  and `addmm` are the Linear layers (every Linear weight is 2-D);
  everything else is an activation product.

  Returns:
    {'torch_counter_macs_linear', 'torch_counter_macs_full'}.
  """
  custom = {}
  cpu_attention = getattr(torch.ops.aten,
                          '_scaled_dot_product_flash_attention_for_cpu', None)
  if cpu_attention is not None:
    custom[cpu_attention] = flop_counter.sdpa_flop
  counter = flop_counter.FlopCounterMode(display=False,
                                         custom_mapping=custom)
  with counter, torch.no_grad():
    model(inputs)
  per_op = counter.get_flop_counts().get('Global', {})
  linear = sum(v for op, v in per_op.items()
               if str(op).split('.')[1] in ('mm', 'addmm'))
  return {'torch_counter_macs_linear': linear // 2,
          'torch_counter_macs_full': counter.get_total_flops() // 2}


def measure_steps(spec: dict[str, Any]) -> dict[str, Any]:
  """Times the train or inference step of the spec's model in PyTorch.

  Returns:
    compile_s (torch.compile: the first step; eager: None), first_step_s,
    step_ms and their summary, peak_memory_bytes (CUDA max allocated, else
    None), memory and device.
  """
  configure(spec)
  device, sync = device_and_sync()
  model = build_model(spec, device)
  inputs_np, targets_np = common.synthetic_batch(spec)
  inputs = torch.from_numpy(inputs_np).to(device)
  targets = torch.from_numpy(targets_np).to(device)
  weights = spec['loss']
  compiled = spec['framework'] == 'torch_compile'
  extra = {}
  if spec['framework'] == 'torch' and spec.get('count_flops', True):
    # Batch-1 forward: MACs per clip.
    extra.update(count_flops(model.eval(), inputs[:1]))

  if spec['mode'] == 'train':
    model.train()
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=spec['optim']['learning_rate'],
        weight_decay=spec['optim']['weight_decay'],
        fused=True if device.type == 'cuda' else None)

    def forward_loss(x, y):
      with _autocast(device, spec['dtype']):
        pred = model(x)
      return torch_loss(pred, y, weights)

    loss_fn = torch.compile(forward_loss) if compiled else forward_loss

    def step():
      optimizer.zero_grad(set_to_none=True)
      loss = loss_fn(inputs, targets)
      loss.backward()
      optimizer.step()
      return loss
  else:
    model.eval()

    def forward(x):
      with _autocast(device, spec['dtype']):
        return model(x)

    forward_fn = torch.compile(forward) if compiled else forward

    def step():
      with torch.inference_mode():
        return forward_fn(inputs)

  if device.type == 'cuda':
    torch.cuda.reset_peak_memory_stats(device)
  try:
    timing = common.time_steps(step, sync, spec['warmup'],
                                         spec['steps'])
  except torch.OutOfMemoryError as e:
    # "Does not fit" is a result, with the peak reached before failing.
    return {'error': f'{type(e).__name__}: {e}'.splitlines()[0][:500],
            'out_of_memory': True,
            'peak_memory_bytes': (
                int(torch.cuda.max_memory_allocated(device))
                if device.type == 'cuda' else None),
            'device': device_description(device), **extra}
  peak = (torch.cuda.max_memory_allocated(device)
          if device.type == 'cuda' else None)
  memory = {'host_peak_rss_bytes': common.host_peak_rss_bytes()}
  if spec.get('profile_dir'):
    extra['profile'] = profiling.profile_torch(
        step, sync, spec['profile_dir'], spec['profile_steps'],
        cuda=device.type == 'cuda')
  if spec['mode'] == 'train' and not compiled:
    # Hooks see what eager autograd saves; compiled graphs save their own
    # (fewer) tensors inside the compiled backward, invisible to the hooks.
    memory['autograd_saved_bytes'] = saved_activation_bytes(
        model, lambda: forward_loss(inputs, targets))
    optimizer.zero_grad(set_to_none=True)
  return {
      **common.summarise_times(timing, spec['batch']),
      'compile_s': timing['first_step_s'] if compiled else None,
      'peak_memory_bytes': int(peak) if peak is not None else None,
      'peak_memory_source': ('torch.cuda.max_memory_allocated'
                             if peak is not None else None),
      'memory': memory,
      'device': device_description(device),
      **extra,
  }


def measure_memory_vs_depth(spec: dict[str, Any]) -> dict[str, Any]:
  """Training-step activation memory of the eager model at several depths.

  Per depth: one untimed training step (allocates the optimizer state),
  then one measured step. CUDA: `cuda_peak_bytes` (max allocated during the
  step, parameters and optimizer state included) and
  `cuda_step_peak_bytes` (that peak minus what was allocated before the
  step). Every device: `autograd_saved_bytes` (see `saved_activation_bytes`).

  Returns:
    {'rows': [{'variant': 'torch', 'depth', ...bytes}, ...], 'device': ...}
  """
  configure(spec)
  device, _ = device_and_sync()
  inputs_np, targets_np = common.synthetic_batch(spec)
  inputs = torch.from_numpy(inputs_np).to(device)
  targets = torch.from_numpy(targets_np).to(device)
  rows = []
  for depth in spec['depths']:
    model = build_model(spec, device, depth=depth).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def forward_loss(model=model):
      with _autocast(device, spec['dtype']):
        pred = model(inputs)
      return torch_loss(pred, targets, spec['loss'])

    def train_step(model=model, optimizer=optimizer,
                   forward_loss=forward_loss):
      optimizer.zero_grad(set_to_none=True)
      forward_loss().backward()
      optimizer.step()

    train_step()
    row = {'variant': 'torch', 'depth': depth}
    if device.type == 'cuda':
      torch.cuda.synchronize()
      before = torch.cuda.memory_allocated(device)
      torch.cuda.reset_peak_memory_stats(device)
      train_step()
      torch.cuda.synchronize()
      peak = torch.cuda.max_memory_allocated(device)
      row['cuda_peak_bytes'] = int(peak)
      row['cuda_step_peak_bytes'] = int(peak - before)
    optimizer.zero_grad(set_to_none=True)
    row['autograd_saved_bytes'] = saved_activation_bytes(model, forward_loss)
    rows.append(row)
    print(f'memory_vs_depth torch depth={depth}: saved '
          f"{row['autograd_saved_bytes'] / 2**20:.1f} MiB", flush=True)
    del model, optimizer
    with contextlib.suppress(Exception):
      torch.cuda.empty_cache()
  return {'rows': rows, 'device': device_description(device)}


def measure_linear_products(spec: dict[str, Any]) -> dict[str, Any]:
  """Times the forward, input-gradient and weight-gradient products of every
  Linear-layer shape in `spec['products']`, as autograd runs them: `mm`
  with a transposed view for the gradients (`linear_products` module). One
  timed call runs `linear_products.PRODUCTS_PER_CALL` products, as on the
  JAX side.

  Returns:
    products (each with `<form>_ms` medians), step_ms (their per-step total)
    and device.
  """
  configure(spec)
  device, sync = device_and_sync()
  dtype = {'float32': torch.float32, 'bfloat16': torch.bfloat16}[
      spec['dtype']]
  generator = torch.Generator().manual_seed(spec['seed'])
  repeats = linear_products.PRODUCTS_PER_CALL

  def time_form(form, left_shape, right_shape):
    left, right = (torch.randn(s, generator=generator).to(device, dtype)
                   for s in (left_shape, right_shape))
    # Transposed views where the form contracts a first / last axis.
    contract_left, contract_right = linear_products.CONTRACTED_AXES[form]
    if contract_left == 0:
      left = left.t()
    if contract_right == 1:
      right = right.t()

    def step():
      for _ in range(repeats):
        out = torch.mm(left, right)
      return out

    with torch.no_grad():
      return common.time_steps(step, sync, spec['warmup'],
                               spec['steps'])['step_ms']

  return {**linear_products.measure(spec['products'], time_form),
          'device': device_description(device)}
