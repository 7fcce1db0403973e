"""Pools the step times of the rounds in this folder (run_rounds.sh).

python pool.py: per (file prefix, model, framework) the median, quartiles
and minimum of every timed step of every round, and the per-round ratio
JAX / torch of the medians (torch median / JAX median: > 1 = JAX faster).
"""
import collections
import json
import pathlib
import re

import numpy as np

HERE = pathlib.Path(__file__).parent
steps = collections.defaultdict(list)
medians = collections.defaultdict(dict)
for path in sorted(HERE.glob('*_round*.json')):
  prefix, rnd = re.fullmatch(r'(.*)_round(\d+)\.json', path.name).groups()
  for row in json.loads(path.read_text())['results']:
    key = (prefix, row['model'], row['framework'])
    steps[key] += row['step_ms']
    medians[key][int(rnd)] = row['step_ms_median']
for key in sorted(steps):
  t = np.asarray(steps[key])
  print('%-22s %-9s %-5s n=%3d median %6.1f (p25-p75 %6.1f-%6.1f, min %6.1f)'
        % (*key, len(t), np.median(t), *np.percentile(t, [25, 75]), t.min()))
for (prefix, model, framework) in sorted(steps):
  if framework != 'jax' or (prefix, model, 'torch') not in steps:
    continue
  jax_t, torch_t = (np.asarray(steps[(prefix, model, f)])
                    for f in ('jax', 'torch'))
  rounds = medians[(prefix, model, 'jax')]
  per_round = ' / '.join(
      '%.2f' % (medians[(prefix, model, 'torch')][r] / rounds[r])
      for r in sorted(rounds))
  print('%-22s %-9s torch/jax pooled medians %.2fx, minima %.2fx; rounds %s'
        % (prefix, model, np.median(torch_t) / np.median(jax_t),
           torch_t.min() / jax_t.min(), per_round))
