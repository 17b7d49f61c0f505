"""The `gendd` command. Each sub-command lives in its own module of this package and registers
itself on `main`; user errors (GenddError) become one line on stderr and exit code 2."""

from __future__ import annotations

import os
import sys

import click

from gendd import __version__
from gendd.errors import GenddError


class _Group(click.Group):
    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        """Click's own errors (a bad option value, an unknown option) as one line too."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as e:
            click.echo(f"gendd: error: {e.format_message()} (see --help)", err=True)
            sys.exit(2)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("gendd: interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx):
        import torch

        # For every command (training, sampling, evaluation) in one place: denormal floats
        # slow CPU training and sampling down by 10x and more.
        torch.set_flush_denormal(True)
        try:
            return super().invoke(ctx)
        except GenddError as e:
            click.echo(f"gendd: error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("gendd: interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gendd")
def main():
    """Generative dataset distillation: train a class-conditional latent diffusion model on a
    data set, sample a small distilled set from it, and evaluate that set as the ECCV 2024
    Dataset Distillation Challenge did."""


def entry():
    """The `gendd` console script: `main`, re-executed first under tcmalloc where the system
    has it (`gendd.utils.malloc`: refinement allocates large buffers every iteration)."""
    from gendd.utils.malloc import tcmalloc_environment, tcmalloc_library

    env = tcmalloc_environment(os.environ, tcmalloc_library, sys.platform)
    if env is not None:
        try:
            os.execve(sys.executable, [sys.executable, "-m", "gendd.cli", *sys.argv[1:]], env)
        except OSError:
            pass  # run as it is
    main(prog_name="gendd")


def _register():
    # Imported for their side effect of adding commands to `main`.
    import importlib
    import pkgutil

    for mod in pkgutil.iter_modules(__path__):
        if mod.name.endswith("_cmd"):
            importlib.import_module(f"{__name__}.{mod.name}")


_register()
