"""The ``recompile`` command, and the ``kiln inspect`` subcommand it contributes.

``recompile IMAGE -o OUT`` reads a container image, recompiles every x86-64
ELF in it into one WebAssembly megabinary and writes an output image: the
original layers untouched plus one layer holding the megabinary.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from recompiler.clikit import ReportingCommand
from recompiler.image import FORMATS
from recompiler.inspect_cmd import inspect_command
from recompiler.pipeline import RecompileOptions, recompile_image

__all__ = ["main", "inspect_command"]


@click.command(cls=ReportingCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("image", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", required=True, type=click.Path(path_type=Path),
              help="Where to write the recompiled image. For --format oci a directory that "
                   "does not exist yet (or is empty); for the archive formats a file that does "
                   "not exist yet.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="oci", show_default=True,
              help="Output image format: an OCI image layout directory, an OCI archive (tar of "
                   "a layout), or a docker-archive that `docker load` accepts.")
@click.option("--platform", default=None, metavar="OS/ARCH",
              help="Which image to take from a multi-platform index (default linux/amd64).")
@click.option("--tag", default="latest", show_default=True,
              help="Tag recorded in the output (org.opencontainers.image.ref.name).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=None,
              help="Worker processes: ELF files are lifted, linked and compiled in parallel, a "
                   "large one in batches of functions by all of them "
                   "(default: the number of CPUs). The output does not depend on it.")
@click.option("--no-cache", is_flag=True,
              help="Lift every ELF again instead of reusing lifted units cached by BLAKE3.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Cache directory (default $KILN_CACHE or ~/.cache/kiln).")
@click.option("--sign", "sign_key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="KEY",
              help="Sign the megabinary with this Ed25519 private key (PEM, from `kiln keygen`): "
                   "the output holds /.kiln/megabinary.sig beside the megabinary, which `kiln run` "
                   "checks against the trusted keys of its policy.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as one JSON object on stdout (errors as JSON on stderr).")
def main(image: Path, output: Path, fmt: str, platform: str | None, tag: str, jobs: int | None,
         no_cache: bool, cache_dir: Path | None, sign_key: Path | None, as_json: bool) -> None:
    """Recompile the x86-64 Linux container image IMAGE into OUT.

    IMAGE may be an OCI image layout directory, an OCI archive, a docker-archive
    (`docker save` output) or a plain root filesystem directory. Every x86-64
    program and shared library in it (static, PIE and dynamic programs, every .so,
    ld.so itself) is lifted to WebAssembly, compiled ahead of time for this machine
    by Wasmtime, and stored with a BLAKE3-keyed index in one megabinary. OUT holds the original layers untouched plus one layer with the
    megabinary at /.kiln/megabinary.kmb. Run it with `kiln run OUT -- CMD`.

    The report lists the ELF files recompiled, functions and instructions lifted,
    instructions the lifter does not support (they become traps that end the
    program with a clear message if reached) and time per stage.

    With --sign KEY the megabinary is signed (Ed25519) and the signature file
    /.kiln/megabinary.sig goes into the same layer; a `kiln run` whose policy
    (/etc/kiln/policy.json) trusts the key accepts it.
    """
    signing_key = None
    if sign_key is not None:              # read the key first: a bad key must not cost a recompile
        from formats.keys import load_signing_key
        signing_key = load_signing_key(sign_key)
    opts = RecompileOptions(fmt=fmt, platform=platform, jobs=jobs or (os.cpu_count() or 1), tag=tag,
                            cache=cache_dir, use_cache=not no_cache, signing_key=signing_key)
    bars: dict[str, object] = {}
    interactive = sys.stderr.isatty() and not as_json

    def progress(stage: str, done: int, total: int) -> None:
        """One bar per stage ("lift", then "compile"), each closed when its stage is done."""
        if not interactive:
            return
        bar = bars.get(stage)
        if bar is None:
            bar = bars[stage] = click.progressbar(length=total, label=stage, file=sys.stderr)
            bar.__enter__()
        bar.update(1)
        if done == total:
            bar.__exit__(None, None, None)

    report = recompile_image(image, output, opts, progress=progress)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        click.echo(report.render())


if __name__ == "__main__":  # pragma: no cover
    main()
