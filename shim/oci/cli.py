"""``kiln-oci``: the runc-compatible OCI runtime command that containerd, dockerd and CRI drive.

containerd's ``io.containerd.runc.v2`` shim runs it exactly as it runs runc
(``BinaryName``, ``ctr run --runc-binary``): ``create`` sets a container up
from a bundle, ``start`` lets its guest run, ``state``, ``kill``, ``exec``,
``ps``, ``pause``/``resume``, ``update`` and ``delete`` manage it. The
container life cycle itself is vkernel's (vkernel/containers.py); this module
is the command line, the bundle's config (shim/oci/bundle.py) and the error
reporting runc's callers expect: a JSON line in the ``--log`` file (the last
error is what containerd shows) and the message on stderr, exit status 2.
"""
from __future__ import annotations

import json
import os
import signal as hsignal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from formats.errors import EXIT_BAD_INPUT, KilnError

__all__ = ["main", "OCI_VERSION"]

OCI_VERSION = "1.0.2"
"""The runtime-spec version kiln-oci implements (what ``state`` and ``features`` say)."""
DEFAULT_ROOT = "/run/kiln-oci"


class _Log:
    """runc's --log / --log-format: JSON lines (``level``, ``msg``, ``time``) or text."""

    def __init__(self, path: str | None, fmt: str, debug: bool) -> None:
        self.path, self.fmt, self.debug_on = path, fmt, debug

    def write(self, level: str, msg: str) -> None:
        if self.path is None or (level == "debug" and not self.debug_on):
            return
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = json.dumps({"level": level, "msg": msg, "time": now}) if self.fmt == "json" \
            else f'time="{now}" level={level} msg="{msg}"'
        try:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(line + "\n")
        except OSError:
            pass


class _Group(click.Group):
    """Reports KilnError as runc's callers read it (log file and stderr), exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KilnError as err:
            log = ctx.obj.get("log") if isinstance(ctx.obj, dict) else None
            if log is not None:
                log.write("error", err.message + (f" (hint: {err.hint})" if err.hint else ""))
            click.echo(f"kiln-oci: error: {err.message}", err=True)
            if err.hint:
                click.echo(f"hint: {err.hint}", err=True)
            sys.exit(EXIT_BAD_INPUT)


def _containers(ctx: click.Context):  # -> vkernel.containers.Containers
    from vkernel.containers import Containers
    if os.geteuid() != 0:
        raise KilnError("kiln-oci runs containers as root only",
                        hint="containerd and dockerd run it as root; run it with sudo")
    return Containers(Path(ctx.obj["root"]))


def _write_pid_file(path: str | None, pid: int) -> None:
    if not path:
        return
    tmp = f"{path}.kiln-tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(str(pid))
    os.replace(tmp, path)


def _check_trust(megabinary: Path, subject: str) -> tuple[str, Path | None]:
    """The policy's verdict on ``megabinary`` (vkernel/trust.py): its pinned digest and the
    audit log the run writes to; TrustRefused (a KilnError) when it may not run."""
    from vkernel.audit import AuditLog
    from vkernel.trust import check_megabinary, load_policy
    policy = load_policy(None)
    audit_log = Path(policy.audit_log) if policy.audit_log else None
    if not policy.active:
        return "", audit_log
    audit = AuditLog(audit_log)
    try:
        return check_megabinary(policy, megabinary, audit, subject=subject).digest, audit_log
    finally:
        audit.close()


def _parse_signal(text: str) -> int:
    name = text.upper()
    if name.isdigit():
        return int(name)
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(getattr(hsignal.Signals, name))
    except AttributeError:
        raise KilnError(f"unknown signal {text!r}", hint="give a number or a name like TERM") \
            from None


def main(argv: list[str] | None = None) -> None:
    """The ``kiln-oci`` entry point. containerd's environment may forbid byte code next to the
    sources (PYTHONDONTWRITEBYTECODE): keep it in Kiln's cache, or every call compiles
    vkernel afresh."""
    from vkernel.cli import keep_bytecode
    keep_bytecode()
    cli(args=argv, prog_name="kiln-oci")


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]},
             invoke_without_command=True)
@click.option("--root", default=DEFAULT_ROOT, show_default=True,
              help="Directory for the containers' state (made 0700).")
@click.option("--log", "log_path", default=None, help="Append errors (and --debug lines) here.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Format of the --log lines.")
@click.option("--debug", is_flag=True, help="Also log debug lines.")
@click.option("--systemd-cgroup", is_flag=True,
              help="Accepted for runc compatibility; kiln-oci makes its own cgroups.")
@click.option("--rootless", default="auto", help="Accepted for runc compatibility.")
@click.option("--criu", default=None, hidden=True)
@click.option("-v", "--version", "version", is_flag=True, help="Print the version.")
@click.pass_context
def cli(ctx: click.Context, root: str, log_path: str | None, log_format: str, debug: bool,
         systemd_cgroup: bool, rootless: str, criu: str | None, version: bool) -> None:
    """kiln-oci: a runc-compatible OCI runtime that runs recompiled images under vkernel.

    containerd's runc shim, dockerd and Kubernetes (through containerd's CRI)
    drive it as they drive runc. Only images made by `recompile` run: the
    megabinary in the image's /.kiln is the only code that can execute, every
    program is hash-checked, and the trust policy ($KILN_POLICY, else
    /etc/kiln/policy.json) is checked at every create and exec. See
    docs/integration.md.
    """
    ctx.obj = {"root": root, "log": _Log(log_path, log_format, debug)}
    if version:
        from importlib.metadata import version as dist_version
        click.echo(f"kiln-oci version {dist_version('kiln')}\nspec: {OCI_VERSION}")
        ctx.exit(0)
    if ctx.invoked_subcommand is None:
        click.echo(ctx.get_help())


@cli.command()
@click.option("-b", "--bundle", default=".", help="The bundle directory (config.json, rootfs).")
@click.option("--pid-file", default=None, help="Write the container's pid here.")
@click.option("--console-socket", default=None,
              help="Unix socket that receives the pseudo-terminal's master (process.terminal).")
@click.option("--no-pivot", is_flag=True, help="Accepted (vkernel confines paths itself).")
@click.option("--no-new-keyring", is_flag=True, help="Accepted (guests have no keyring).")
@click.option("--preserve-fds", default=0, type=int, help="Only 0 is supported.")
@click.argument("container_id")
@click.pass_context
def create(ctx: click.Context, bundle: str, pid_file: str | None, console_socket: str | None,
           no_pivot: bool, no_new_keyring: bool, preserve_fds: int, container_id: str) -> None:
    """Set up container CONTAINER_ID from a bundle; `start` runs it."""
    from shim.oci import bundle as oci_bundle
    from shim.oci import podns
    if preserve_fds:
        raise KilnError("--preserve-fds is not supported by kiln-oci")
    path = Path(bundle).resolve()
    config = oci_bundle.load_config(path / "config.json")
    rootfs = oci_bundle.rootfs_of(path, config)
    megabinary = oci_bundle.megabinary_of(rootfs)
    digest, audit_log = _check_trust(megabinary, f"container {container_id}")
    oci_bundle.check_linux(config)
    pod = podns.enter(config)               # a pod's network and UTS namespace, by path
    spec = oci_bundle.run_spec(path, config, megabinary, digest, audit_log,
                               network_shared=pod.network_shared)
    console = _console(spec.tty, console_socket)
    annotations = config.get("annotations") or {}
    rec = _containers(ctx).create(container_id, path, spec, dict(annotations), console,
                                  exec_base=_exec_base(spec))
    _write_pid_file(pid_file, rec.pid)


@cli.command()
@click.option("-b", "--bundle", default=".", help="The bundle directory (config.json, rootfs).")
@click.option("--pid-file", default=None, help="Write the container's pid here.")
@click.option("--console-socket", default=None, help="As for create.")
@click.option("-d", "--detach", is_flag=True, help="Return once the container has started.")
@click.option("--keep", is_flag=True, help="Do not delete the container when it ends.")
@click.option("--no-pivot", is_flag=True, help="Accepted.")
@click.option("--no-new-keyring", is_flag=True, help="Accepted.")
@click.argument("container_id")
@click.pass_context
def run(ctx: click.Context, bundle: str, pid_file: str | None, console_socket: str | None,
        detach: bool, keep: bool, no_pivot: bool, no_new_keyring: bool,
        container_id: str) -> None:
    """Create and start a container, wait for it and delete it; its exit status."""
    ctx.invoke(create, bundle=bundle, pid_file=pid_file, console_socket=console_socket,
               no_pivot=no_pivot, no_new_keyring=no_new_keyring, preserve_fds=0,
               container_id=container_id)
    containers = _containers(ctx)
    rec = containers.start(container_id)
    if detach:
        return
    _, status = os.waitpid(rec.pid, 0)          # the supervisor is our child
    if not keep:
        containers.delete(container_id, force=True)
    code = os.waitstatus_to_exitcode(status)
    sys.exit(128 - code if code < 0 else code)


def _console(tty: bool, console_socket: str | None) -> Callable[[int], None] | None:
    if not tty:
        return None
    if not console_socket:
        raise KilnError("process.terminal is true but no --console-socket was given",
                        hint="the manager passes one (ctr run -t does); kiln-oci does not "
                             "relay a terminal itself")
    from shim.oci.console import sender
    return sender(console_socket)


def _exec_base(spec) -> dict:
    """What a process joining the run later needs to know of it."""
    import dataclasses
    return {"volumes": [dataclasses.asdict(v) for v in spec.volumes],
            "megabinary": str(spec.megabinary), "audit_log": str(spec.audit_log or ""),
            "hostname": spec.hostname, "readonly_root": spec.readonly_root,
            "network": spec.net.mode}


@cli.command()
@click.argument("container_id")
@click.pass_context
def start(ctx: click.Context, container_id: str) -> None:
    """Let a created container's guest run."""
    _containers(ctx).start(container_id)


@cli.command()
@click.argument("container_id")
@click.pass_context
def state(ctx: click.Context, container_id: str) -> None:
    """Print the container's state (runtime-spec JSON)."""
    containers = _containers(ctx)
    rec = containers.get(container_id)
    status = containers.status(rec)
    click.echo(json.dumps({
        "ociVersion": OCI_VERSION, "id": rec.id, "pid": 0 if status == "stopped" else rec.pid,
        "status": status, "bundle": rec.bundle, "rootfs": rec.rootfs, "created": rec.created,
        "annotations": rec.annotations, "owner": ""}, indent=2))


@cli.command("list")
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("-q", "--quiet", is_flag=True, help="Only the ids.")
@click.pass_context
def list_command(ctx: click.Context, fmt: str, quiet: bool) -> None:
    """List the containers under --root."""
    containers = _containers(ctx)
    rows = []
    for cid in containers.ids():
        rec = containers.get(cid)
        status = containers.status(rec)
        rows.append({"ociVersion": OCI_VERSION, "id": cid, "status": status,
                     "pid": 0 if status == "stopped" else rec.pid, "bundle": rec.bundle,
                     "rootfs": rec.rootfs, "created": rec.created, "owner": "root",
                     "annotations": rec.annotations})
    if quiet:
        for r in rows:
            click.echo(r["id"])
    elif fmt == "json":
        click.echo(json.dumps(rows))
    else:
        click.echo(f"{'ID':<20} {'PID':<8} {'STATUS':<10} {'BUNDLE':<40} CREATED")
        for r in rows:
            click.echo(f"{r['id']:<20} {r['pid']:<8} {r['status']:<10} {r['bundle']:<40} "
                       f"{r['created']}")


@cli.command()
@click.option("-a", "--all", "all_processes", is_flag=True,
              help="Send the signal to every process of the container.")
@click.argument("container_id")
@click.argument("signal", default="TERM")
@click.pass_context
def kill(ctx: click.Context, all_processes: bool, container_id: str, signal: str) -> None:
    """Send SIGNAL (default TERM) to the container's first process."""
    _containers(ctx).kill(container_id, _parse_signal(signal), all_processes)


@cli.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.argument("container_id")
@click.pass_context
def delete(ctx: click.Context, force: bool, container_id: str) -> None:
    """Remove a stopped container and everything it left."""
    _containers(ctx).delete(container_id, force)


@cli.command()
@click.option("-f", "--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.argument("container_id")
@click.argument("ps_args", nargs=-1)
@click.pass_context
def ps(ctx: click.Context, fmt: str, container_id: str, ps_args: tuple[str, ...]) -> None:
    """List the host pids of the container's processes."""
    pids = _containers(ctx).processes(container_id)
    if fmt == "json":
        click.echo(json.dumps(pids))
    else:
        click.echo("PID")
        for p in pids:
            click.echo(str(p))


@cli.command()
@click.argument("container_id")
@click.pass_context
def pause(ctx: click.Context, container_id: str) -> None:
    """Freeze every process of the container (the cgroup freezer)."""
    _containers(ctx).pause(container_id, True)


@cli.command()
@click.argument("container_id")
@click.pass_context
def resume(ctx: click.Context, container_id: str) -> None:
    """Thaw a paused container."""
    _containers(ctx).pause(container_id, False)


@cli.command()
@click.option("-r", "--resources", default=None,
              help="A JSON file of linux.resources ('-': stdin); memory.limit and pids.limit "
                   "are applied.")
@click.option("--memory", default=None, type=int, help="Memory limit in bytes.")
@click.option("--pids-limit", default=None, type=int, help="Maximum number of processes.")
@click.argument("container_id")
@click.pass_context
def update(ctx: click.Context, resources: str | None, memory: int | None,
           pids_limit: int | None, container_id: str) -> None:
    """Change the memory and pids limits of a live container."""
    if resources is not None:
        try:
            text = sys.stdin.read() if resources == "-" else Path(resources).read_text()
            res = json.loads(text) or {}
        except (OSError, ValueError) as e:
            raise KilnError(f"--resources {resources}: {e}") from None
        memory = memory if memory is not None else (res.get("memory") or {}).get("limit")
        pids_limit = pids_limit if pids_limit is not None else (res.get("pids") or {}).get("limit")
        ignored = sorted(k for k, v in res.items() if v and k not in ("memory", "pids"))
        if ignored:
            ctx.obj["log"].write("warning", f"update: {', '.join(ignored)} not applied by "
                                            "kiln-oci (memory and pids limits only)")
    mem = memory if memory and memory > 0 else None
    pids = pids_limit if pids_limit and pids_limit > 0 else None
    _containers(ctx).update(container_id, mem, pids)


@cli.command()
@click.option("--stats", is_flag=True, help="Print the statistics once and exit.")
@click.option("--interval", default="5s", help="Between two statistics events.")
@click.argument("container_id")
@click.pass_context
def events(ctx: click.Context, stats: bool, interval: str, container_id: str) -> None:
    """Print statistics events (memory, pids) as JSON lines."""
    containers = _containers(ctx)
    seconds = float(interval.rstrip("s") or 5)
    while True:
        rec = containers.get(container_id)
        if containers.status(rec) == "stopped":
            raise KilnError(f"container not running: {container_id}")
        s = containers.stats(container_id)
        click.echo(json.dumps({"type": "stats", "id": container_id, "data": {
            "memory": {"usage": {"usage": s.get("memory_usage", 0),
                                 "limit": s.get("memory_limit", 0)}},
            "pids": {"current": s.get("pids_current", 0)}}}))
        if stats:
            return
        time.sleep(seconds)


@cli.command()
def features() -> None:
    """Print what kiln-oci supports (runc's features JSON)."""
    from vkernel import caps
    click.echo(json.dumps({
        "ociVersionMin": "1.0.0", "ociVersionMax": OCI_VERSION,
        "hooks": [],
        "mountOptions": sorted(["bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec",
                                "mode", "size"]),
        "linux": {"namespaces": ["mount", "pid", "user"],
                  "capabilities": [f"CAP_{n.upper()}" for n in caps.NAMES],
                  "cgroup": {"v1": True, "v2": True, "systemd": False},
                  "seccomp": {"enabled": True}, "apparmor": {"enabled": False},
                  "selinux": {"enabled": False}},
        "annotations": {"io.kiln.runtime": "kiln-oci"}}, indent=2))


from shim.oci.exec_cmd import exec_command  # noqa: E402  (registers `exec`)

cli.add_command(exec_command)
