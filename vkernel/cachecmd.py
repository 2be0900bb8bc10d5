"""``kiln cache ls|prune``: what Kiln's cache holds, and trimming it to its budget."""
from __future__ import annotations

import json
import time

from formats.cache import Budget, budget, cache_root, parse_size

__all__ = ["cache_group"]


def _size(n: int) -> str:
    """Bytes in the largest binary unit that keeps the number below 1024."""
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def _age(ns: int | None) -> str:
    """How long ago the time ``ns`` (nanoseconds since the epoch) was."""
    if ns is None:
        return "-"
    s = max(0.0, time.time() - ns / 1e9)
    for limit, div, unit in ((120, 1, "s"), (7200, 60, "min"), (172800, 3600, "h")):
        if s < limit:
            return f"{s / div:.0f} {unit} ago"
    return f"{s / 86400:.0f} d ago"


def _limit(max_size: str | None) -> Budget:
    if max_size is None:
        return budget()
    return Budget(parse_size(max_size, "--max"), "--max")


def cache_group():  # -> click.Group
    """The ``kiln cache`` group (click is imported by the caller's command_group)."""
    import click

    @click.group("cache")
    def cache() -> None:
        """List and trim Kiln's cache ($KILN_CACHE, else ~/.cache/kiln).

        Everything Kiln builds (lifted units, modules, AOT artifacts, megabinaries,
        the bundles `kiln run IMAGE` unpacks, test inputs) is kept there within a
        budget: $KILN_CACHE_MAX (e.g. 20G), else `max` in the [cache] table of
        ~/.config/kiln/config.toml, else 20 GiB. After each write the least recently
        used entries go until the cache fits; entries in use are never removed.
        """

    @cache.command("ls")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    def ls_command(as_json: bool) -> None:
        """Each cache with its size, entry count and the last use of its least and most
        recently used entries."""
        from formats.cache_scan import usage
        click.get_current_context().meta["kiln.json"] = as_json
        u = usage(cache_root())
        if as_json:
            click.echo(json.dumps(u.to_dict(), indent=2, sort_keys=True))
            return
        click.echo(f"{u.root}: {_size(u.total_bytes)} of {_size(u.budget.bytes)} "
                   f"(budget from {u.budget.source})")
        if not u.caches:
            return
        rows = [("cache", "size", "entries", "least recent use", "most recent use")]
        rows += [(c.name, _size(c.bytes), str(c.entries), _age(c.oldest_use_ns), _age(c.newest_use_ns))
                 for c in u.caches]
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for r in rows:
            click.echo("  ".join(r[i].ljust(widths[i]) if i in (0, 3, 4) else r[i].rjust(widths[i])
                                 for i in range(5)).rstrip())

    @cache.command("prune")
    @click.option("--max", "max_size", metavar="SIZE",
                  help="Trim to this size (e.g. 5G, 0 for everything not in use) instead of "
                       "the budget.")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    def prune_command(max_size: str | None, as_json: bool) -> None:
        """Remove least recently used entries until the cache fits its budget (or --max).

        Entries in use (a bundle a run is using, an entry being read) are kept and
        listed; temporaries left by killed processes go once an hour old.
        """
        from formats.cache_prune import prune
        click.get_current_context().meta["kiln.json"] = as_json
        report = prune(cache_root(), _limit(max_size))
        if as_json:
            click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
            return
        freed = sum(e.bytes for e in report.removed)
        click.echo(f"removed {len(report.removed)} entr{'y' if len(report.removed) == 1 else 'ies'} "
                   f"({_size(freed)}): {_size(report.bytes_before)} -> {_size(report.bytes_after)} "
                   f"(budget {_size(report.budget.bytes)} from {report.budget.source})")
        if report.stale:
            click.echo(f"removed {len(report.stale)} temporar{'y' if len(report.stale) == 1 else 'ies'} "
                       "left by processes that ended")
        for e in report.in_use:
            click.echo(f"  kept (in use): {e.path} ({_size(e.bytes)})")
        for msg in report.errors:
            click.echo(f"  could not remove {msg}", err=True)

    return cache
