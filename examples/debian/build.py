"""Build a real Debian image: ``debootstrap --variant=minbase`` plus :data:`PACKAGES`
(python3 and a handful of tools), written as a two-layer OCI image.

The root filesystem comes from plain ``debootstrap`` (run as root) with the
mirror this machine's apt already uses (read from ``/etc/apt/sources.list``
and ``/etc/apt/sources.list.d``; no host name is written in the repository).
It is cached under ``cache_dir()/debootstrap/SUITE-KEY`` (KEY: a digest of the
package list): ``rootfs/`` holds the
tree, ``complete.json`` marks it complete. The tree is built in a temporary
sibling directory and renamed into place with the marker already inside, so a
half-built tree is never taken for a complete one.

The image has two layers:

1. ``base``: every file of the tree (modes and mtimes kept, owners root, as
   :func:`recompiler.image.rootfs_entries` writes them), without the ``.deb``
   files debootstrap leaves in ``/var/cache/apt/archives``.
2. ``site``: whiteouts that delete :data:`WHITEOUTS` (one ELF program, one
   text file), a replaced ``/etc/hostname`` and a new ``/etc/kiln-example``
   (:data:`ADDED`); its parent directories keep the base layer's modes and
   mtimes.

    python3 -m examples.debian.build OUT [--suite bookworm] [--format oci|oci-archive|...]
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from examples.debs import cache_dir
from formats.cache import after_write, publish_dir, use
from formats.errors import KilnError, user_report
from recompiler.image import (ExtraLayer, LayerEntry, file_entry, rootfs_entries,
                              scratch_image, write_image)
from recompiler.image.source import DEFAULT_ENV_PATH
from formats.trees import remove_tree

__all__ = ["build_debian_image", "debootstrap_rootfs", "apt_mirror", "apt_sources",
           "base_entries", "site_entries", "WHITEOUTS", "ADDED", "EXCLUDED_PATTERN", "COMPLETE",
           "DebianBuildError", "main"]

PACKAGES = ("python3", "libpython3.11-testsuite", "perl", "sqlite3", "lua5.4", "jq", "bc", "gawk",
            "xz-utils", "bzip2", "file", "nginx", "redis-server", "python3-flask")
"""Installed on top of minbase (``debootstrap --include``): what Kiln's differential tests run
(CPython and its regression tests, perl with its XS modules, sqlite3, jq, awk, compressors, and
the servers of tests/test_debian_servers.py: nginx, redis, a Flask app)."""

WHITEOUTS = ("/usr/bin/pinky", "/etc/motd")
"""Paths of the base layer that the second layer deletes with whiteouts (an ELF, a text file)."""

HOSTNAME = b"kiln-debian\n"

ADDED: dict[str, bytes] = {
    "/etc/hostname": HOSTNAME,
    "/etc/kiln-example": b"Kiln example image: Debian debootstrap --variant=minbase with python3\n",
}
"""Files the second layer writes (``/etc/hostname`` replaces the base layer's)."""

EXCLUDED_PATTERN = re.compile(r"^/var/cache/apt/archives/[^/]+\.deb$")
"""Files of the debootstrap tree left out of the image (the downloaded packages)."""

COMPLETE = "complete.json"
_SUITE_RE = re.compile(r"^[a-z][a-z0-9.-]{0,31}$")
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9.+-]{0,63}$")


class DebianBuildError(KilnError):
    """The Debian example image could not be built (no debootstrap, no mirror, a failed run)."""


# -- apt sources --------------------------------------------------------------

def _one_line_sources(text: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(URI, suites) of each ``deb`` line of a one-line-style sources.list."""
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^\]]*\]", " ", line)    # [arch=amd64 signed-by=...]
        words = line.split()
        if len(words) >= 3:
            yield words[1], (words[2],)


def _deb822_sources(text: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(URI, suites) of each enabled ``Types: deb`` stanza of a ``.sources`` file."""
    stanzas = re.split(r"\n\s*\n", text)
    for stanza in stanzas:
        fields: dict[str, str] = {}
        key = None
        for raw in stanza.splitlines():
            if raw.lstrip().startswith("#"):
                continue
            if raw[:1] in (" ", "\t") and key is not None:
                fields[key] += " " + raw.strip()
                continue
            if ":" in raw:
                key, value = raw.split(":", 1)
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        suites = tuple(fields.get("suites", "").split())
        for uri in fields.get("uris", "").split():
            yield uri, suites


def apt_sources(apt_dir: Path = Path("/etc/apt")) -> list[tuple[str, tuple[str, ...]]]:
    """Every (URI, suites) of a binary-package source apt reads on this machine, in apt's order."""
    out: list[tuple[str, tuple[str, ...]]] = []
    main = apt_dir / "sources.list"
    if main.is_file():
        out.extend(_one_line_sources(main.read_text(errors="replace")))
    parts = apt_dir / "sources.list.d"
    if parts.is_dir():
        for f in sorted(parts.iterdir()):
            if f.name.endswith(".list") and f.is_file():
                out.extend(_one_line_sources(f.read_text(errors="replace")))
            elif f.name.endswith(".sources") and f.is_file():
                out.extend(_deb822_sources(f.read_text(errors="replace")))
    return out


def apt_mirror(suite: str = "bookworm", apt_dir: Path = Path("/etc/apt")) -> str:
    """The Debian mirror URL this machine's apt uses for ``suite``.

    A source listing ``suite`` itself comes first; otherwise the first source
    listing a plain release (no ``-security`` / ``-updates`` / ``/updates``),
    since a Debian mirror serves every release.
    """
    sources = apt_sources(apt_dir)
    for uri, suites in sources:
        if suite in suites:
            return uri
    for uri, suites in sources:
        if any("-" not in s and "/" not in s for s in suites) and "security" not in uri:
            return uri
    raise DebianBuildError(
        f"no Debian mirror found for {suite!r} in {apt_dir}/sources.list or "
        f"{apt_dir}/sources.list.d",
        hint="add a 'deb' source for a Debian mirror to apt's sources, or pass mirror=")


# -- debootstrap into the cache ----------------------------------------------

def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` (debootstrap mounts /proc and /sys in its target)."""
    prefix = os.path.realpath(path)
    found = []
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return found


def _remove_tree(path: Path) -> None:
    """Delete a (possibly half-built) debootstrap tree, unmounting what debootstrap left."""
    if not path.exists():
        return
    for point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", point], capture_output=True)
    left = _mounts_under(path)
    if left:
        raise DebianBuildError(
            f"cannot remove {path}: {', '.join(left)} still mounted",
            hint=f"unmount them (umount -R {path}) and run again")
    remove_tree(path)


@contextmanager
def _locked(lock: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock`` (other builds of the same suite wait)."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _check_can_debootstrap() -> str:
    exe = shutil.which("debootstrap") or next(
        (p for p in ("/usr/sbin/debootstrap", "/sbin/debootstrap") if os.access(p, os.X_OK)),
        None)
    if exe is None:
        raise DebianBuildError("debootstrap is not installed",
                               hint="apt-get install debootstrap (scripts/setup.sh does)")
    if os.geteuid() != 0:
        raise DebianBuildError("debootstrap must run as root to build the Debian example tree",
                               hint="run as root once; later runs reuse the cached tree")
    return exe


def tree_key(packages: tuple[str, ...]) -> str:
    """The cache name's suffix for a tree with ``packages`` on top of minbase."""
    return hashlib.sha256(" ".join(sorted(packages)).encode()).hexdigest()[:12]


def debootstrap_rootfs(suite: str = "bookworm", *, mirror: str | None = None,
                       packages: tuple[str, ...] = PACKAGES) -> Path:
    """The ``debootstrap --variant=minbase --include=PACKAGES SUITE`` tree in Kiln's cache,
    built if needed.

    Returns ``cache_dir()/debootstrap/SUITE-KEY/rootfs``. A tree is reused only
    when ``complete.json`` (written before the tree is moved into place) is
    there; an incomplete one is removed and built again.
    """
    if not _SUITE_RE.match(suite):
        raise DebianBuildError(f"{suite!r} is not a Debian suite name",
                               hint="give a release name such as bookworm or trixie")
    if not all(_PACKAGE_RE.match(p) for p in packages):
        raise DebianBuildError(f"{packages!r}: not Debian package names",
                               hint="give names such as python3 or xz-utils")
    base = cache_dir() / "debootstrap"
    name = f"{suite}-{tree_key(packages)}"
    dest = base / name
    if (done := _leased_if_complete(dest)) is not None:
        return done
    with _locked(base / f".{name}.lock"):
        if (done := _leased_if_complete(dest)) is not None:   # another process finished it
            return done
        exe = _check_can_debootstrap()
        mirror = mirror or apt_mirror(suite)
        _remove_tree(dest)
        for stale in base.glob(f".{name}-build-*"):
            _remove_tree(stale)
        work = Path(tempfile.mkdtemp(dir=base, prefix=f".{name}-build-"))
        log = base / f"{name}-debootstrap.log"
        include = [f"--include={','.join(packages)}"] if packages else []
        target = work / "rootfs"
        started = time.time()
        try:
            with open(log, "w") as logf:
                proc = subprocess.run([exe, "--variant=minbase", *include, "--arch=amd64",
                                       suite, str(target), mirror],
                                      stdout=logf, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
            if proc.returncode != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-5:])
                raise DebianBuildError(
                    f"debootstrap --variant=minbase {' '.join(include)} {suite} {mirror} failed with status "
                    f"{proc.returncode}:\n{tail}",
                    hint=f"see {log}; check the network and that {mirror} serves {suite}")
            if _mounts_under(target):
                raise DebianBuildError(f"debootstrap left mounts in {target}: "
                                       f"{', '.join(_mounts_under(target))}",
                                       hint=f"unmount them (umount -R {target}) and run again")
            if not (target / "etc/debian_version").is_file():
                raise DebianBuildError(f"debootstrap finished but {target} has no "
                                       "etc/debian_version", hint=f"see {log}")
            version = subprocess.run([exe, "--version"], capture_output=True,
                                     text=True).stdout.strip()
            (work / COMPLETE).write_text(json.dumps({
                "suite": suite, "variant": "minbase", "include": list(packages),
                "arch": "amd64", "mirror": mirror,
                "debootstrap": version, "seconds": round(time.time() - started, 1),
                "debian_version": (target / "etc/debian_version").read_text().strip(),
            }, indent=2) + "\n")
            lease = publish_dir(work, dest)
        finally:
            if work.exists():
                _remove_tree(work)
    if lease is None:
        raise DebianBuildError(f"{dest} appeared while debootstrap ran, outside the build lock",
                               hint=f"remove {dest} and run again")
    after_write()
    return lease.keep() / "rootfs"


def _leased_if_complete(dest: Path) -> Path | None:
    """``dest/rootfs``, leased until this process ends (eviction leaves it alone), when the
    tree there is complete."""
    lease = use(dest)
    if lease is None:
        return None
    if not (dest / COMPLETE).is_file():
        lease.close()
        return None
    return lease.keep() / "rootfs"


# -- the two layers -----------------------------------------------------------

def base_entries(root: Path) -> list[LayerEntry]:
    """The first layer: every entry of the tree at ``root`` except :data:`EXCLUDED_PATTERN`."""
    return [e for e in rootfs_entries(root) if not EXCLUDED_PATTERN.match(e.path)]


def site_entries(root: Path) -> list[LayerEntry]:
    """The second layer: whiteouts of :data:`WHITEOUTS` and the files of :data:`ADDED`.

    Each parent directory is written with the mode and mtime it has in the
    tree at ``root``, so applying the layer changes nothing else.
    """
    entries: list[LayerEntry] = []
    parents: set[str] = set()
    for victim in WHITEOUTS:
        if not os.path.lexists(root / victim.lstrip("/")):
            raise DebianBuildError(f"{root}: {victim} is missing, the second layer cannot "
                                   "delete it", hint="the suite's packages changed: pick "
                                   "other paths in examples/debian/build.py WHITEOUTS")
        d, name = victim.rsplit("/", 1)
        entries.append(file_entry(f"{d}/.wh.{name}", b"", 0o644))
        parents.add(d)
    for path, data in ADDED.items():
        entries.append(file_entry(path, data, 0o644))
        parents.add(path.rsplit("/", 1)[0])
    for d in sorted(parents):
        parts = d.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            p = "/" + "/".join(parts[:i])
            if any(e.path == p for e in entries):
                continue
            st = os.lstat(root / p.lstrip("/"))
            entries.append(LayerEntry(p, "dir", st.st_mode & 0o7777, mtime=int(st.st_mtime)))
    return entries


def _config(root: Path, suite: str) -> dict:
    version = (root / "etc/debian_version").read_text().strip()
    return {
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Cmd": ["/bin/bash"],
            "Env": [DEFAULT_ENV_PATH],
            "WorkingDir": "/",
            "Labels": {
                "org.opencontainers.image.title": f"Debian {suite} (debootstrap minbase, python3)",
                "org.opencontainers.image.version": version,
                "org.opencontainers.image.source": "https://wiki.debian.org/Debootstrap",
            },
        },
    }


def build_debian_image(out: Path, *, suite: str = "bookworm", fmt: str = "oci",
                       tag: str = "latest") -> Path:
    """Write the two-layer Debian ``suite`` image (minbase and :data:`PACKAGES`) to ``out``
    (new); return ``out``."""
    root = debootstrap_rootfs(suite)
    layers = [
        ExtraLayer(tuple(base_entries(root)),
                   created_by=f"debootstrap --variant=minbase --include={','.join(PACKAGES)} {suite}",
                   comment="examples/debian/build.py: base layer"),
        ExtraLayer(tuple(site_entries(root)),
                   created_by="examples/debian/build.py: site layer",
                   comment=f"whiteouts of {', '.join(WHITEOUTS)}; adds "
                           f"{', '.join(ADDED)}"),
    ]
    write_image(scratch_image(_config(root, suite), f"debian-{suite}"), Path(out),
                extra_layers=layers, fmt=fmt, tag=tag,
                annotations={"org.opencontainers.image.title": f"debian-{suite}-python"})
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog="python3 -m examples.debian.build",
                                     description="Build the Debian example image (minbase with python3) "
                                                 "(debootstrap, as root; cached).")
    parser.add_argument("out", type=Path, help="output path (new directory or archive file)")
    parser.add_argument("--suite", default="bookworm")
    parser.add_argument("--format", dest="fmt", default="oci",
                        choices=["oci", "oci-archive", "docker-archive"])
    parser.add_argument("--tag", default="latest")
    args = parser.parse_args(argv)
    try:
        path = build_debian_image(args.out, suite=args.suite, fmt=args.fmt, tag=args.tag)
    except KilnError as err:
        print(user_report(err), file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
