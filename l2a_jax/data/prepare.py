r"""CLI: prepare a TFDS pose dataset (array_record, no TensorFlow).

  python -m l2a_jax.data.prepare --dataset NAME [--builder_config CONFIG] \
      [--manual_dir DIR] --data_dir DIR [--allow_pickle] [--overwrite] \
      [--name CORPUS] [--strict]

NAME is one of h36m, mpi_inf_3dhp, bvh_motion, synthetic, optionally with
the config after a slash (`h36m/videopose3d_cpn`). Source files and configs:

  h36m/motionbert       DIR/h36m_sh_conf_cam_source_final.pkl
  h36m/videopose3d_cpn  DIR/data_3d_h36m.npz,
                        DIR/data_2d_h36m_cpn_ft_h36m_dbb.npz
  h36m/videopose3d_gt   DIR/data_3d_h36m.npz
  mpi_inf_3dhp          DIR/data_train_3dhp.npz, DIR/data_test_3dhp.npz
  bvh_motion/default    DIR/**/*.bvh (+ optional mapping.json per folder,
  bvh_motion/noisy      test_files.txt); --name CORPUS stores it as
                        bvh_motion/CORPUS (CORPUS_noisy for noisy), so
                        several BVH corpora share one data dir. Rejected
                        files are skipped with a warning line each
                        (--strict: the first one is an error).
  synthetic/default     nothing (generated)
  synthetic/large

The Human3.6M and 3DHP files store Python objects that only pickle can read.
They are read only with --allow_pickle, and then through a restricted
unpickler that accepts NumPy arrays and plain containers and nothing else.

Exit status 0 on success; on bad input one line `error: ...` and status 1.
"""

import argparse
import json
import pathlib
import re
import sys

from l2a_jax import atomic_output
from l2a_jax import cli

from l2a_jax.data import builders
from l2a_jax.data import bvh_builder
from l2a_jax.data import formats

_MANUAL = ('h36m', 'mpi_inf_3dhp', 'bvh_motion')
_PICKLED = ('h36m', 'mpi_inf_3dhp')


def _parse(argv):
  parser = cli.OneLineArgumentParser(
      prog='python -m l2a_jax.data.prepare',
      description=__doc__,
      epilog=('The Human3.6M and MPI-INF-3DHP source files are pickled '
              'Python objects: they are read only with --allow_pickle (a '
              'restricted unpickler that loads NumPy arrays and plain '
              'containers only).'),
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--dataset', required=True,
                      help='h36m | mpi_inf_3dhp | bvh_motion | synthetic '
                      '(optionally NAME/CONFIG)')
  parser.add_argument('--builder_config', default=None,
                      help='config of the dataset (h36m: motionbert, '
                      'videopose3d_cpn, videopose3d_gt; bvh_motion: default, '
                      'noisy; synthetic: default, large)')
  parser.add_argument('--manual_dir', default=None,
                      help='folder with the source files (not for synthetic)')
  parser.add_argument('--data_dir', default=None,
                      help='TFDS data root (default $TFDS_DATA_DIR or '
                      '~/tensorflow_datasets)')
  parser.add_argument('--allow_pickle', action='store_true',
                      help='allow reading the pickled Human3.6M / 3DHP '
                      'source files (restricted to NumPy arrays and '
                      'containers); needed for h36m and mpi_inf_3dhp')
  parser.add_argument('--overwrite', action='store_true',
                      help='rebuild even if the dataset is already prepared')
  parser.add_argument('--name', default=None,
                      help='bvh_motion only: corpus name, stored as config '
                      'CORPUS (or CORPUS_noisy with --builder_config noisy); '
                      'train with data.builder_config=CORPUS')
  parser.add_argument('--strict', action='store_true',
                      help='bvh_motion only: fail at the first rejected file '
                      'instead of skipping it with a warning')
  return parser.parse_args(argv)


# Written next to a prepared manual dataset: which source files it was built
# from, so that preparing again from other files is noticed.
SOURCE_FILE = 'manual_source.json'


def manual_source(manual_dir: str) -> dict:
  """The identity of a --manual_dir: its files with size and mtime.

  Raises:
    ValueError: no such directory, or it holds no file.
  """
  directory = pathlib.Path(manual_dir)
  if not directory.is_dir():
    raise ValueError(f'--manual_dir {manual_dir}: no such directory')
  files = {str(p.relative_to(directory)): [p.stat().st_size,
                                           p.stat().st_mtime_ns]
           for p in sorted(directory.rglob('*')) if p.is_file()}
  if not files:
    raise ValueError(f'--manual_dir {manual_dir} is empty: put the source '
                     'files there (see --help)')
  return {'manual_dir': str(directory.resolve()), 'files': files}


def _recorded_source(builder) -> dict | None:
  path = pathlib.Path(builder.data_dir) / SOURCE_FILE
  try:
    return json.loads(path.read_text())
  except (OSError, ValueError):
    return None


def run(args) -> str:
  """Prepares the dataset; returns a summary line. Raises on bad input."""
  name, _, config = args.dataset.partition('/')
  if config and args.builder_config and config != args.builder_config:
    raise ValueError(f'--dataset {args.dataset} and --builder_config '
                     f'{args.builder_config} disagree')
  config = config or args.builder_config
  kwargs = {'allow_pickle': args.allow_pickle}
  if name == 'bvh_motion':
    if args.name:
      config = bvh_builder.corpus_config_name(args.name, config)
    kwargs['strict'] = args.strict
  elif args.name or args.strict:
    raise ValueError(f'--name and --strict are for bvh_motion, not {name}')
  if name in _MANUAL and not args.manual_dir:
    raise ValueError(f'--dataset {name} needs --manual_dir (the folder with '
                     'the source files)')
  if name in _PICKLED and not args.allow_pickle:
    raise formats.PickleNotAllowedError(
        f'{name} source files are pickled Python objects; pass '
        '--allow_pickle to read them (restricted to NumPy arrays)')
  source = manual_source(args.manual_dir) if name in _MANUAL else None
  builder = builders.get_builder(name, config, args.data_dir, **kwargs)
  if args.overwrite and builder.is_prepared():
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(builder.data_dir)
    builder = builders.get_builder(name, config, args.data_dir, **kwargs)
  reused = builder.is_prepared()
  note = ''
  if reused and source is not None:
    recorded = _recorded_source(builder)
    if recorded is None:
      note = (' (prepared earlier from unrecorded source files; pass '
              '--overwrite to rebuild from --manual_dir)')
    elif recorded.get('files') != source['files']:
      raise ValueError(
          f'{builder.data_dir} already holds {builder.info.full_name} '
          f'prepared from {recorded.get("manual_dir")}, whose files differ '
          f'from --manual_dir {source["manual_dir"]}: pass --overwrite to '
          'rebuild it, or use another --data_dir')
  builders.prepare(builder, manual_dir=args.manual_dir)
  if source is not None and not reused:
    with atomic_output.atomic_output(
        pathlib.Path(builder.data_dir) / SOURCE_FILE, 'w') as f:
      json.dump(source, f, indent=1)
  for line in _bvh_warnings(builder):
    print(f'warning: {line}', file=sys.stderr)
  splits = builder.info.splits
  parts = [f'{split} {splits[split].num_examples if split in splits else 0}'
           ' videos' for split in ('train', 'test')]
  skipped = len(getattr(builder, 'skipped', ()))
  if skipped:
    parts.append(f'{skipped} files skipped')
  state = 'already prepared, reused' if reused else 'prepared'
  return (f'{builder.info.full_name} in {builder.data_dir} ({state}): '
          + ', '.join(parts) + note)


def _bvh_warnings(builder) -> list[str]:
  """One line per skipped BVH file, one per kind of repair warning."""
  lines = [f'skipped {reason}'
           for _, reason in getattr(builder, 'skipped', ())]
  kinds = {}
  for path, message in getattr(builder, 'notes', ()):
    kind = message.removeprefix(f'{path}: ')
    kind = re.sub(r'\d+ mm', 'N mm', kind)
    kinds.setdefault(kind, []).append((path, message))
  for kind, items in kinds.items():
    first = items[0][1]
    lines.append(first if len(items) == 1 else
                 f'{first} (and {len(items) - 1} more files)')
  return lines


def main(argv=None) -> int:
  args = _parse(argv)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()
  try:
    summary = run(args)
  except (ValueError, OSError) as error:
    message = ' '.join(str(error).split())
    print(f'error: {message}', file=sys.stderr)
    return 1
  print(summary)
  return 0


if __name__ == '__main__':
  sys.exit(main())
