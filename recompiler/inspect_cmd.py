"""``kiln inspect IMAGE``: list every ELF in an image with what Kiln will do with it."""
from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from recompiler.clikit import ReportingCommand
from recompiler.inventory import ElfInventory, ElfKind, take_inventory

__all__ = ["inspect_command", "render_table"]


@contextlib.contextmanager
def _rootfs_for(image_path: Path, platform: str | None = None) -> Iterator[Path]:
    """The rootfs of the image at ``image_path``, for the duration of the block.

    A directory that is not an OCI layout is taken as a rootfs as it is; any
    image (OCI layout, OCI archive, docker-archive) is verified and unpacked
    into a temporary directory under Kiln's cache, removed afterwards.
    """
    from formats.cache import cache_root, scratch
    from recompiler.image import ImageKind, open_image

    with open_image(image_path, platform=platform) as img:
        if img.kind == ImageKind.ROOTFS and img.rootfs is not None:
            yield img.rootfs
            return
        with scratch(cache_root() / "work", "inspect-") as tmp:
            root = Path(tmp) / "rootfs"
            img.unpack(root)
            yield root


_KIND_LABEL = {ElfKind.EXEC: "EXEC", ElfKind.PIE: "PIE", ElfKind.SHARED: "shared",
               ElfKind.REL: "REL", ElfKind.CORE: "CORE"}


def _size(n: int | None) -> str:
    """Bytes in the largest binary unit that keeps the number below 1024."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # unreachable


def _printable(path: str) -> str:
    """A file name for a terminal: bytes that are not UTF-8 shown as \\xNN escapes."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _summary(inv: ElfInventory) -> str:
    """One line: counts by kind, total size, skipped, files scanned."""
    kinds = ", ".join(f"{n} {_KIND_LABEL[k]}" for k, n in inv.by_kind().items())
    total = sum(r.size for r in inv.elves)
    noun = "file" if len(inv.elves) == 1 else "files"
    text = f"{len(inv.elves)} x86-64 ELF {noun}"
    if kinds:
        text += f" ({kinds})"
    text += f", {_size(total)}; {len(inv.skipped)} skipped; {inv.files_scanned} files scanned"
    return text


def render_table(inv: ElfInventory) -> str:
    """The inventory as an aligned text table, the skipped files, and a summary line."""
    header = ("PATH", "KIND", "LINK", "SIZE", "STRIPPED", "NOTES")
    rows = [(_printable(r.path), _KIND_LABEL[r.kind], r.linkage.value, _size(r.size),
             "yes" if r.stripped else "no", ", ".join(r.notes)) for r in inv.elves]
    lines = []
    if rows:
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].ljust(widths[2]),
                     row[3].rjust(widths[3]), row[4].ljust(widths[4]), row[5]]
            lines.append("  ".join(cells).rstrip())
    if inv.skipped:
        if lines:
            lines.append("")
        lines.append("skipped:")
        names = [_printable(s.path) for s in inv.skipped]
        width = max(len(n) for n in names)
        for name, s in zip(names, inv.skipped):
            lines.append(f"  {name.ljust(width)}  {s.reason}")
    if lines:
        lines.append("")
    lines.append(_summary(inv))
    return "\n".join(lines)


@click.command("inspect", cls=ReportingCommand,
               context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("image", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True,
              help="Print the inventory as JSON on stdout (stable, sorted by path) "
                   "instead of a table; errors are JSON on stderr too.")
@click.option("--platform", default=None, metavar="OS/ARCH",
              help="Which image to take from a multi-platform index (default linux/amd64).")
def inspect_command(image: Path, as_json: bool, platform: str | None) -> None:
    """List every ELF file in IMAGE and how Kiln classifies it.

    IMAGE is an OCI image layout directory, an OCI archive, a docker-archive
    (`docker save` output) or a plain root filesystem directory; images are
    verified and unpacked into Kiln's cache first. For each distinct ELF
    content the table shows its path, kind (EXEC, PIE, shared, REL,
    CORE), static or dynamic linkage, size, whether it is stripped, and
    notes (IRELATIVE relocations, TLS, .eh_frame, aliases: hard links,
    copies and symlinks resolved inside IMAGE). ELFs that will not be
    recompiled (other machines, corrupt headers) are listed with the
    reason. A progress bar is shown on stderr when it is a terminal.
    """
    with _rootfs_for(image, platform) as root:
        if sys.stderr.isatty():
            inv = _with_progress_bar(root)
        else:
            inv = take_inventory(root)
    if as_json:
        click.echo(inv.to_json())
    else:
        click.echo(render_table(inv))


def _with_progress_bar(root: Path) -> ElfInventory:
    """take_inventory with a click progress bar on stderr over the files examined."""
    with contextlib.ExitStack() as stack:
        bar_holder: list = []
        reported = [0]

        def progress(done: int, total: int) -> None:
            if not bar_holder:
                bar_holder.append(stack.enter_context(
                    click.progressbar(length=total, label="inventory", file=sys.stderr,
                                      update_min_steps=max(1, total // 200))))
            bar_holder[0].update(done - reported[0])
            reported[0] = done

        return take_inventory(root, progress=progress)
