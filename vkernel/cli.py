"""The ``kiln`` command: run recompiled images, and inspect them.

Subcommands that belong to the recompiler (``kiln inspect``) are contributed
through the ``kiln.commands`` entry-point group so that vkernel never imports
the recompiler (docs/architecture.md, layer rules).
"""
from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path

import click

from formats.errors import EXIT_BAD_INPUT, KilnError, user_report


class KilnGroup(click.Group):
    """A click group that reports KilnError cleanly and loads plugin commands."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        names.update(ep.name for ep in entry_points(group="kiln.commands"))
        return sorted(names)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        cmd = super().get_command(ctx, name)
        if cmd is not None:
            return cmd
        for ep in entry_points(group="kiln.commands"):
            if ep.name == name:
                return ep.load()
        return None

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except KilnError as err:
            as_json = bool(ctx.meta.get("kiln.json"))
            click.echo(user_report(err, as_json=as_json), err=True)
            sys.exit(EXIT_BAD_INPUT)


@click.group(cls=KilnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kiln")
def main() -> None:
    """Kiln: run x86-64 Linux container images as ahead-of-time compiled WebAssembly.

    Recompile an image first with `recompile IMAGE -o OUT`, then run it with
    `kiln run OUT -- CMD ARGS`. `kiln inspect IMAGE` lists every program and
    library an image holds.
    """


@main.command("run", context_settings={"ignore_unknown_options": True})
@click.option("--rootfs", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The image's root directory (never modified).")
@click.option("--megabinary", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The megabinary produced by `recompile`.")
@click.option("--env", "env", multiple=True, metavar="K=V", help="Set an environment variable.")
@click.option("--workdir", default="/", show_default=True, help="Working directory in the guest.")
@click.option("--trace", is_flag=True, help="Print each syscall on stderr, strace style.")
@click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path),
              help="Append policy decisions (refusals) as JSON lines to this file.")
@click.option("--upper", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the run's file changes in this directory (created if missing); "
                   "default: a temporary directory removed when the run ends.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run_command(rootfs: Path, megabinary: Path, env: tuple[str, ...], workdir: str, trace: bool,
                audit_log: Path | None, upper: Path | None, command: tuple[str, ...]) -> None:
    """Run COMMAND from a recompiled rootfs: kiln run --rootfs DIR --megabinary FILE -- CMD ARGS.

    Exits with the guest's status (128+N when a signal N ended it).
    """
    from vkernel.runtime import RunSpec, run_guest
    for item in env:
        if "=" not in item or item.startswith("="):
            raise KilnError(f"--env {item!r} is not of the form KEY=VALUE",
                            hint="write --env NAME=value")
    if not workdir.startswith("/"):
        raise KilnError(f"--workdir {workdir!r} must be an absolute path in the guest")
    if upper is not None:
        if upper.resolve() == rootfs.resolve() or rootfs.resolve() in upper.resolve().parents:
            raise KilnError(f"--upper {upper} lies inside the rootfs {rootfs}",
                            hint="the rootfs is never modified; put the upper directory elsewhere")
        try:
            upper.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise KilnError(f"cannot create the upper directory {upper}: {e.strerror}",
                            hint="choose a writable directory for --upper") from None
    spec = RunSpec(rootfs=rootfs, megabinary=megabinary, argv=tuple(command), env=env,
                   workdir=workdir, trace=trace, audit_log=audit_log, upper=upper)
    try:
        status = run_guest(spec)
    except KilnError:
        raise
    except Exception as e:  # never a traceback for the user
        raise KilnError(f"internal error in vkernel: {type(e).__name__}: {e}",
                        hint="please report this with the command line and the megabinary") from None
    sys.exit(status)


if __name__ == "__main__":  # pragma: no cover
    main()
