"""``kiln-oci exec``: one more guest process in a running container (``ctr task exec``)."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import click

from formats.errors import KilnError

__all__ = ["exec_command"]


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-p", "--process", "process_file", default=None,
              help="A JSON file with the process to run (runtime-spec `process`).")
@click.option("-d", "--detach", is_flag=True, help="Return once the process has started.")
@click.option("--pid-file", default=None, help="Write the new process's pid here.")
@click.option("--console-socket", default=None, help="Where its terminal's master goes.")
@click.option("-t", "--tty", is_flag=True, help="Give it a terminal (with --console-socket).")
@click.option("--cwd", default=None, help="Its working directory.")
@click.option("-e", "--env", multiple=True, help="K=V, added to its environment.")
@click.option("-u", "--user", default=None, help="UID[:GID] to run as.")
@click.option("--no-new-privs", is_flag=True, help="Accepted (always on).")
@click.option("--preserve-fds", default=0, type=int, help="Only 0 is supported.")
@click.argument("container_id")
@click.argument("command", nargs=-1)
@click.pass_context
def exec_command(ctx: click.Context, process_file: str | None, detach: bool,
                 pid_file: str | None, console_socket: str | None, tty: bool, cwd: str | None,
                 env: tuple[str, ...], user: str | None, no_new_privs: bool,
                 preserve_fds: int, container_id: str, command: tuple[str, ...]) -> None:
    """Run a new process in container CONTAINER_ID (from --process, or COMMAND)."""
    from shim.oci import bundle as oci_bundle
    from shim.oci.cli import _check_trust, _console, _containers, _write_pid_file
    from vkernel.netpolicy import HOST, ISOLATED, NetPolicy
    from vkernel.runtime import RunSpec
    from vkernel.vfs import Volume
    if preserve_fds:
        raise KilnError("--preserve-fds is not supported by kiln-oci")
    if process_file is not None:
        try:
            proc_json = json.loads(Path(process_file).read_text())
        except (OSError, ValueError) as e:
            raise KilnError(f"--process {process_file}: {e}") from None
        proc = oci_bundle.process_spec(proc_json, "the --process file")
    else:
        if not command:
            raise KilnError("no command given", hint="kiln-oci exec ID COMMAND [ARGS], or --process FILE")
        proc = oci_bundle.OciProcess(tuple(command), (), "/", "0:0", tty, ())
    merged = [*proc.env, *env]
    containers = _containers(ctx)
    rec = containers.get(container_id)
    base = rec.exec_base
    megabinary = Path(base.get("megabinary", ""))
    digest, audit_log = _check_trust(megabinary, f"exec in container {container_id}")
    spec = RunSpec(
        rootfs=Path(rec.rootfs), megabinary=megabinary, argv=proc.args, env=tuple(merged),
        workdir=cwd or proc.cwd, audit_log=audit_log or (Path(base["audit_log"])
                                                         if base.get("audit_log") else None),
        volumes=tuple(Volume(**v) for v in base.get("volumes", ())),
        user=user if user is not None else proc.user, tty=proc.terminal or tty,
        megabinary_digest=digest, hostname=base.get("hostname", ""), rlimits=proc.rlimits,
        cap_sets=proc.capabilities, no_new_privs=proc.no_new_privs,
        # The container's network (its own loopback, or the one it shares), as its first
        # process has it.
        net=NetPolicy(HOST if base.get("network") == HOST else ISOLATED))
    console = _console(spec.tty, console_socket)
    written: list[int] = []

    def ready(pid: int) -> None:
        _write_pid_file(pid_file, pid)
        written.append(pid)

    pid = containers.exec(container_id, dataclasses.replace(spec), console, ready)
    if detach:
        return
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    sys.stdout.flush()
    sys.exit(128 - code if code < 0 else code)
