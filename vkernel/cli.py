"""The ``kiln`` command: run recompiled images, and inspect them.

Subcommands that belong to the recompiler (``kiln inspect``) are contributed
through the ``kiln.commands`` entry-point group so that vkernel never imports
the recompiler (docs/architecture.md, layer rules).
"""
from __future__ import annotations

import sys
from importlib.metadata import entry_points

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


if __name__ == "__main__":  # pragma: no cover
    main()
