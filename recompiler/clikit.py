"""Command-line conventions shared by the recompiler's commands."""
from __future__ import annotations

import sys

import click

from formats.errors import EXIT_BAD_INPUT, KilnError, user_report

__all__ = ["ReportingCommand"]


class ReportingCommand(click.Command):
    """Turns a KilnError into ``error:``/``hint:`` lines on stderr and exit status 2.

    With ``--json`` (a parameter named ``as_json``) the error is one JSON object.
    """

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except KilnError as err:
            click.echo(user_report(err, as_json=bool(ctx.params.get("as_json"))), err=True)
            sys.exit(EXIT_BAD_INPUT)
