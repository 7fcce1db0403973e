"""Command-line plumbing shared by every entry point.

One behaviour for all of `main`, `predict`, `convert_torch`, `benchmark`,
`benchmark.plot`, `benchmark.l2a_costs`, `data.throughput` and the two
argparse commands `data.prepare` and `data.bvh` (`OneLineArgumentParser`):

- `--help` (`-h`, `--helpshort`, `--helpfull`) prints the module's docstring
  and its flags and exits 0;
- usage errors exit with status 2 and ONE line `PROGRAM: error: ...` naming
  the flag, config field or file: a missing required flag, a missing or
  broken `--config` file, an unknown `--config.FIELD`, a value of the wrong
  type. They are found before JAX is imported or anything is written;
- `--config PATH[:ARG]`: a relative PATH is looked up in the current
  directory, then in the repository root (`ml_collections` only looks in the
  current directory), so the commands work from anywhere in a checkout;
- logging is quiet by default (`l2a_jax.console`); `--verbosity=1` shows
  everything.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib.util
import os
import pathlib
import re
import sys
from typing import Any, Callable, NoReturn, Sequence

from absl import app
from absl import flags
import ml_collections

_REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

HELP_ARGUMENTS = ('-h', '-help', '--help', '--helpshort', '--helpfull', '-?')
# Exit status of a usage error (as argparse).
USAGE_ERROR = 2

class UsageError(ValueError):
  """A bad command line; the message is one line."""


def fail(program: str, message: Any) -> NoReturn:
  """Prints `PROGRAM: error: MESSAGE` (one line) and exits with status 2."""
  text = ' '.join(str(message).split())
  sys.stderr.write(f'{program}: error: {text}\n')
  sys.stderr.flush()
  sys.exit(USAGE_ERROR)


class OneLineArgumentParser(argparse.ArgumentParser):
  """argparse with this module's usage errors: one line, exit status 2.

  argparse prints its usage block before the error; here the error line
  alone (`PROGRAM: error: ...`, PROGRAM the last word of `prog`), as every
  other entry point. `--help` is argparse's own (the full usage, exit 0).
  """

  def error(self, message: str) -> NoReturn:
    fail(self.prog.split()[-1].rsplit('.', 1)[-1], message)


# ----------------------------------------------------------------------------
# --config paths, files and overrides.
# ----------------------------------------------------------------------------


def _resolve(value: str) -> str:
  """`PATH[:ARG]` with a relative PATH made absolute if found in the repo."""
  path, sep, variant = value.partition(':')
  if not os.path.isabs(path) and not os.path.exists(path):
    candidate = _REPO_ROOT / path
    if candidate.exists():
      return f'{candidate}{sep}{variant}'
  return value


def resolve_config_path(argv: Sequence[str]) -> list[str]:
  """argv with every --config path looked up in cwd, then the repo root.

  Handles `--config=PATH[:ARG]` and the two-token `--config PATH[:ARG]`.
  """
  resolved = list(argv)
  for i, arg in enumerate(resolved):
    for prefix in ('--config=', '-config='):
      if arg.startswith(prefix):
        resolved[i] = prefix + _resolve(arg[len(prefix):])
    if arg in ('--config', '-config') and i + 1 < len(resolved):
      resolved[i + 1] = _resolve(resolved[i + 1])
  return resolved


def config_specs(argv: Sequence[str]) -> list[str]:
  """The `--config PATH[:ARG]` values of argv, in order."""
  specs = []
  for i, arg in enumerate(argv):
    for prefix in ('--config=', '-config='):
      if arg.startswith(prefix):
        specs.append(arg[len(prefix):])
    if arg in ('--config', '-config') and i + 1 < len(argv):
      specs.append(argv[i + 1])
  return specs


_OVERRIDE = re.compile(r'^--?(no)?config\.([A-Za-z_][\w.]*)(?:=(.*))?$',
                       re.DOTALL)


def split_config_overrides(argv: Sequence[str]
                           ) -> tuple[list[str], list[tuple[str, str]]]:
  """argv without its `--config.FIELD=VALUE` arguments, and those as pairs.

  `--config.FIELD VALUE` (two tokens) takes the next token; `--config.FLAG`
  and `--noconfig.FLAG` (booleans) give 'true' / 'false'.

  Returns:
    `(other arguments, [(FIELD, VALUE), ...])`.
  """
  rest, overrides = [], []
  arguments = list(argv)
  i = 0
  while i < len(arguments):
    match = _OVERRIDE.match(arguments[i])
    if not match:
      rest.append(arguments[i])
      i += 1
      continue
    negated, field, value = match.groups()
    if negated:
      value = 'false'
    elif value is None:
      following = arguments[i + 1] if i + 1 < len(arguments) else None
      if following is not None and not following.startswith('-'):
        value = following
        i += 1
      else:
        value = 'true'
    overrides.append((field, value))
    i += 1
  return rest, overrides


def config_overrides(argv: Sequence[str]) -> list[tuple[str, str]]:
  """`(FIELD, VALUE)` of every `--config.FIELD=VALUE` in argv."""
  return split_config_overrides(argv)[1]


def load_config_file(spec: str, module_name: str = 'l2a_cli_config'
                     ) -> ml_collections.ConfigDict:
  """Loads `PATH[:ARG]` the way `config_flags.DEFINE_config_file` does.

  Args:
    spec: a config file, optionally followed by ':' and the argument of its
      `get_config` (e.g. `configs/l2a_h36m.py:frames=27`).
    module_name: the name the file is imported under.

  Returns:
    The ConfigDict its `get_config` returns.

  Raises:
    UsageError: the file is missing, not Python, or fails to load (one line
      naming the file).
  """
  spec = resolve_config_path(['--config', spec])[1]
  path, sep, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise UsageError(f'--config: config file {path!r} not found')
  module_spec = importlib.util.spec_from_file_location(module_name, path)
  if module_spec is None or not path.endswith('.py'):
    raise UsageError(f'--config: {path!r} is not a Python config file')
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    config = module.get_config(arg) if sep else module.get_config()
  except Exception as e:  # pylint: disable=broad-except
    first = f'{type(e).__name__}: {e}'.strip().splitlines()[0]
    raise UsageError(f'--config: config file {path!r} is broken: '
                     f'{first}') from e
  if not isinstance(config, ml_collections.ConfigDict):
    raise UsageError(f'--config: {path!r}: get_config() returned '
                     f'{type(config).__name__}, expected a ConfigDict')
  return config


def _closest(name: str, choices: Sequence[str]) -> str:
  close = difflib.get_close_matches(name, list(choices), n=1)
  return f' (did you mean {close[0]!r}?)' if close else ''


def _parse_value(text: str, current: Any, field: str) -> Any:
  """`text` converted to the type of the field's current value."""
  def wrong(expected):
    return UsageError(f'--config.{field}={text}: expected {expected}, got '
                      f'{text!r}')
  if isinstance(current, bool):
    if text.lower() not in ('true', 'false', 't', 'f', '1', '0'):
      raise wrong('a bool (true / false)')
    return text.lower() in ('true', 't', '1')
  if isinstance(current, str):
    return text
  if current is None:
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text
  if isinstance(current, int):
    try:
      return int(text)
    except ValueError:
      raise wrong('int') from None
  if isinstance(current, float):
    try:
      return float(text)  # Also 'inf', 'nan', '1e-4'.
    except ValueError:
      raise wrong('float') from None
  if isinstance(current, (tuple, list)):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      raise wrong(f'a {type(current).__name__} literal') from None
    if not isinstance(value, (tuple, list)):
      value = (value,)
    return type(current)(value)
  return text


def apply_override(config: ml_collections.ConfigDict, field: str,
                   text: str) -> None:
  """Sets `config.FIELD` (dotted) from the text of `--config.FIELD=TEXT`.

  Raises:
    UsageError: an unknown field or section (with the closest name), or a
      value that does not fit the field's type.
  """
  *parents, leaf = field.split('.')
  node = config
  for depth, name in enumerate(parents):
    if name not in node or not isinstance(node[name],
                                          ml_collections.ConfigDict):
      where = '.'.join(parents[:depth]) or 'config'
      raise UsageError(f'--config.{field}: {where} has no section '
                       f'{name!r}{_closest(name, list(node.keys()))}')
    node = node[name]
  if leaf not in node:
    where = '.'.join(parents) or 'config'
    raise UsageError(f'--config.{field}: {where} has no field {leaf!r}'
                     f'{_closest(leaf, list(node.keys()))}')
  value = _parse_value(text, node[leaf], field)
  try:
    node[leaf] = value
  except (TypeError, ValueError) as e:
    raise UsageError(f'--config.{field}={text}: '
                     f'{str(e).splitlines()[0]}') from e


def check_config_arguments(argv: Sequence[str]) -> None:
  """Loads every --config file of argv and applies its overrides to a copy.

  Raises:
    UsageError: the first problem (missing/broken file, unknown field,
      wrong type), one line.
  """
  overrides = config_overrides(argv)
  for index, spec in enumerate(config_specs(argv)):
    config = load_config_file(spec, f'l2a_cli_config_{index}')
    for field, text in overrides:
      apply_override(config, field, text)


# ----------------------------------------------------------------------------
# Running a program.
# ----------------------------------------------------------------------------


def wants_help(argv: Sequence[str]) -> bool:
  return any(arg in HELP_ARGUMENTS for arg in argv[1:])


def print_help(doc: str | None) -> None:
  """The program's docstring and the flags it defines (stdout)."""
  print((doc or '').strip())
  for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
    if module.startswith('absl') or not module_flags:
      continue
    print()
    print(flags.FLAGS.module_help(module))
  print('\nCommon flags: --verbosity=1 (show every log message), '
        '--helpfull (all flags).')


def run(main: Callable[[list[str]], Any], *, program: str, doc: str | None,
        required: Sequence[str] = (),
        config: bool = True, argv: Sequence[str] | None = None,
        prepare_argv: Callable[[list[str]], list[str]] | None = None) -> None:
  """Runs `main` under absl with this package's command-line behaviour.

  Args:
    main: `main(argv)`, called with the remaining arguments.
    program: the name in error lines (e.g. 'main', 'benchmark').
    doc: the module docstring (`--help`, with the flags).
    required: flags that must be given (without '--').
    config: whether argv's `--config` files and `--config.FIELD=VALUE`
      overrides are checked before parsing.
    argv: default `sys.argv`.
    prepare_argv: applied to argv after the checks and before absl parses
      it (the benchmark strips its `--config.FIELD` overrides there).
  """
  argv = resolve_config_path(sys.argv if argv is None else argv)
  if wants_help(argv):
    if '--helpfull' in argv:
      print((doc or '').strip())
      print(flags.FLAGS)
    else:
      print_help(doc)
    sys.exit(0)
  try:
    if config:
      check_config_arguments(argv)
  except UsageError as e:
    fail(program, e)
  if prepare_argv is not None:
    argv = prepare_argv(argv)

  def parse(arguments: list[str]) -> list[str]:
    try:
      rest = flags.FLAGS(arguments)
    except flags.Error as e:
      fail(program, e)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
      # ml_collections reports some bad overrides outside flags.Error.
      fail(program, f'{type(e).__name__}: {e}')
    for name in required:
      if flags.FLAGS[name].value in (None, '', []):
        fail(program, f'--{name} is required')
    return rest

  app.run(main, argv=argv, flags_parser=parse)
