"""Pools the step times of the rounds in a folder (run_rounds.sh here).

python pool.py [FOLDER] (default: this folder; cpu_20261206_auto uses it
too): per variant (remat_<name> for JAX, torch) the median,
quartiles and minimum of every timed step of every round, and each JAX
variant against torch eager (torch median / JAX median: > 1 = JAX faster),
pooled and per round (the rounds ran the four invocations back to back).
"""
import collections
import json
import pathlib
import re
import sys

import numpy as np

HERE = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                    pathlib.Path(__file__).parent)
steps = collections.defaultdict(list)
medians = collections.defaultdict(dict)
for path in sorted(HERE.glob('*_round*.json')):
  variant, rnd = re.fullmatch(r'(.*)_round(\d+)\.json', path.name).groups()
  for row in json.loads(path.read_text())['results']:
    key = (variant, row['model'], row['mode'], row['framework'],
           row['dtype'])
    steps[key] += row['step_ms']
    medians[key][int(rnd)] = row['step_ms_median']
for key in sorted(steps):
  t = np.asarray(steps[key])
  print('%-32s %-9s %-5s %-5s %-8s n=%3d median %6.1f (p25-p75 %6.1f-%6.1f, '
        'min %6.1f)' % (*key, len(t), np.median(t),
                        *np.percentile(t, [25, 75]), t.min()))
torch_keys = {(k[1], k[2], k[4]): k for k in steps if k[3] == 'torch'}
for key in sorted(steps):
  variant, model, mode, framework, dtype = key
  if framework != 'jax' or (model, mode, dtype) not in torch_keys:
    continue
  torch_key = torch_keys[(model, mode, dtype)]
  jax_t, torch_t = np.asarray(steps[key]), np.asarray(steps[torch_key])
  per_round = ' / '.join('%.2f' % (medians[torch_key][r] / medians[key][r])
                         for r in sorted(medians[key]))
  print('%-32s %-5s %-8s torch/jax pooled medians %.2fx, minima %.2fx; rounds %s'
        % (variant, mode, dtype, np.median(torch_t) / np.median(jax_t),
           torch_t.min() / jax_t.min(), per_round))
