"""`python -m l2a_jax.benchmark`: runs `l2a_jax.benchmark.cli`."""

from l2a_jax.benchmark import cli

if __name__ == '__main__':
  cli.run_command_line()
