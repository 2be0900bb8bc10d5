"""``kiln serve`` (the sandbox server) and ``kiln sandbox create|exec|ls|rm`` (a thin user of the
SDK), registered as ``kiln`` subcommands through the ``kiln.commands`` entry points."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from formats.errors import KilnError

__all__ = ["serve_command", "sandbox_group"]


@click.command("serve")
@click.option("--listen", default="127.0.0.1:8700", show_default=True, metavar="HOST:PORT",
              help="Where to serve HTTP.")
@click.option("--token-file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Bearer tokens, one 'NAME TOKEN [sandboxes=N] [memory_mb=M] [snapshots=N] "
                   "[admin]' per line; mode 0600.")
@click.option("--image", "images", multiple=True, metavar="NAME=PATH",
              help="Serve this recompiled image (OCI layout or archive) as NAME; repeatable. "
                   "The first one is the default.")
@click.option("--pool", "pools", multiple=True, metavar="NAME=N",
              help="Keep N sandboxes of image NAME ready (warm pool); repeatable.")
@click.option("--state", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="State directory (sandbox records, snapshots, audit log); default "
                   "$KILN_STATE/serve, else /var/lib/kiln/serve.")
@click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Hash-chained audit log of every call (default STATE/audit.jsonl).")
@click.option("--policy", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Trust policy (as kiln run; its kill_switch refuses new sandboxes).")
@click.option("--memory-mb", default=512, show_default=True, type=click.IntRange(64),
              help="A sandbox's memory when it does not ask.")
@click.option("--max-memory-mb", default=8192, show_default=True, type=click.IntRange(64),
              help="The most memory a sandbox may ask for.")
@click.option("--pids", default=128, show_default=True, type=click.IntRange(1),
              help="A sandbox's processes when it does not ask.")
@click.option("--disk-mb", default=256, show_default=True, type=click.IntRange(1),
              help="Each sandbox's writable layer (its disk quota).")
@click.option("--timeout-s", default=300.0, show_default=True, type=click.FloatRange(min=1),
              help="A sandbox's life when it does not ask.")
@click.option("--max-timeout-s", default=86400.0, show_default=True,
              type=click.FloatRange(min=1), help="The longest life a sandbox may ask for.")
@click.option("--max-sandboxes", default=2000, show_default=True, type=click.IntRange(1),
              help="Sandboxes alive at once, server-wide.")
@click.option("--max-body-mb", default=64, show_default=True, type=click.IntRange(1),
              help="The largest file upload.")
def serve_command(listen: str, token_file: Path, images: tuple[str, ...], pools: tuple[str, ...],
                  state: Path | None, audit_log: Path | None, policy: Path | None,
                  memory_mb: int, max_memory_mb: int, pids: int, disk_mb: int, timeout_s: float,
                  max_timeout_s: float, max_sandboxes: int, max_body_mb: int) -> None:
    """Serve agent sandboxes over HTTP/JSON (OpenAPI at /openapi.json, status page at /).

    Each sandbox is a kiln run session of one of the images: its own pid,
    mount and user namespaces, cgroup (memory, processes), a tmpfs writable
    layer of --disk-mb and vkernel's seccomp filter, with no network. A zygote
    per image holds the guest code loaded; sandboxes are forked from it, and
    --pool keeps some forked ahead so acquiring one takes a few milliseconds.
    Needs root (namespaces, cgroups, idmapped mounts). docs/sandboxes.md has
    the API.
    """
    from shim.sandbox.config import ServerConfig, parse_listen
    from shim.sandbox.images import parse_image_option
    from shim.sandbox.tokens import load_tokens
    if os.geteuid() != 0:
        raise KilnError("kiln serve runs as root (each sandbox gets its own namespaces, cgroup "
                        "and mounts)", hint="run it with sudo, or as a root service")
    host, port = parse_listen(listen)
    specs = [parse_image_option(i) for i in images]
    if not specs:
        raise KilnError("no image to serve", hint="give --image NAME=PATH (a recompiled image)")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise KilnError("an --image name is given twice")
    pool_list: list[tuple[str, int]] = []
    for p in pools:
        name, eq, n = p.partition("=")
        if not eq or not n.isdigit() or int(n) < 1:
            raise KilnError(f"--pool {p!r} is not NAME=N", hint="e.g. --pool busybox=8")
        if name not in names:
            raise KilnError(f"--pool {p}: no --image named {name}",
                            hint=f"images: {', '.join(names)}")
        pool_list.append((name, int(n)))
    tokens = load_tokens(token_file)
    from vkernel.statedir import state_root
    state = state if state is not None else state_root() / "serve"
    cfg = ServerConfig(host=host, port=port, token_file=token_file,
                       images=tuple((s.name, s.path) for s in specs), pools=tuple(pool_list),
                       state=state, audit_log=audit_log, policy=policy,
                       default_memory_mb=memory_mb, max_memory_mb=max(max_memory_mb, memory_mb),
                       default_pids=pids, disk_mb=disk_mb, default_timeout_s=timeout_s,
                       max_timeout_s=max(max_timeout_s, timeout_s), max_sandboxes=max_sandboxes,
                       max_body_mb=max_body_mb)
    from shim.sandbox.server import run_server
    run_server(cfg, tokens, specs)


# -- kiln sandbox: the SDK from a shell ----------------------------------------------------
def _client(ctx: click.Context):  # -> shim.sandbox.sdk.Client
    from shim.sandbox.sdk import Client
    return Client(ctx.obj.get("url"), ctx.obj.get("token"))


def _fail(e: Exception, as_json: bool) -> None:
    from shim.sandbox.sdk import SandboxError
    if isinstance(e, SandboxError):
        if as_json:
            click.echo(json.dumps({"error": e.message, "hint": e.hint, "status": e.status}),
                       err=True)
        else:
            click.echo(f"error: {e.message}", err=True)
            if e.hint:
                click.echo(f"hint: {e.hint}", err=True)
        sys.exit(2)
    raise e


class _SandboxGroup(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from shim.sandbox.sdk import SandboxError
        try:
            return super().invoke(ctx)
        except SandboxError as e:
            _fail(e, bool(ctx.meta.get("kiln.json")))


@click.group("sandbox", cls=_SandboxGroup)
@click.option("--url", envvar="KILN_URL", default=None, help="The server (default "
              "$KILN_URL, else http://127.0.0.1:8700).")
@click.option("--token", envvar="KILN_TOKEN", default=None, help="Bearer token (default "
              "$KILN_TOKEN).")
@click.pass_context
def sandbox_group(ctx: click.Context, url: str | None, token: str | None) -> None:
    """Create, use, list and remove sandboxes of a running `kiln serve`."""
    ctx.obj = {"url": url, "token": token}


@sandbox_group.command("create")
@click.option("--image", default=None, help="Image name (default: the server's first).")
@click.option("--timeout", "timeout", type=float, default=None, help="Seconds to live.")
@click.option("--memory-mb", type=int, default=None)
@click.option("--pids", type=int, default=None)
@click.option("--snapshot", default=None, help="Restore this snapshot.")
@click.option("-e", "--env", multiple=True, metavar="K=V")
@click.option("--json", "as_json", is_flag=True, help="Print the sandbox as JSON.")
@click.pass_context
def create_command(ctx: click.Context, image: str | None, timeout: float | None,
                   memory_mb: int | None, pids: int | None, snapshot: str | None,
                   env: tuple[str, ...], as_json: bool) -> None:
    """Create a sandbox; print its id."""
    from shim.sandbox.sdk import Sandbox
    ctx.meta["kiln.json"] = as_json
    envs = {}
    for e in env:
        k, eq, v = e.partition("=")
        if not eq:
            raise click.BadParameter(f"{e!r} is not K=V", param_hint="--env")
        envs[k] = v
    sb = Sandbox.create(image, timeout, snapshot=snapshot, env=envs or None,
                        memory_mb=memory_mb, pids=pids, client=_client(ctx))
    click.echo(json.dumps(sb.info) if as_json else sb.id)


@sandbox_group.command("exec", context_settings={"allow_interspersed_args": False})
@click.argument("sandbox_id")
@click.argument("command", nargs=-1, required=True)
@click.option("--timeout", type=float, default=None)
@click.option("-w", "--cwd", default=None)
@click.pass_context
def exec_command(ctx: click.Context, sandbox_id: str, command: tuple[str, ...],
                 timeout: float | None, cwd: str | None) -> None:
    """Run COMMAND in the sandbox; its output streams here, and its status is ours."""
    from shim.sandbox.sdk import Sandbox
    sb = Sandbox(_client(ctx), sandbox_id)
    out, err = sys.stdout, sys.stderr
    r = sb.exec(list(command), timeout=timeout, cwd=cwd,
                on_stdout=lambda s: (out.write(s), out.flush()),
                on_stderr=lambda s: (err.write(s), err.flush()))
    if r.timed_out:
        click.echo(f"kiln sandbox: timed out after {timeout:g} s", err=True)
    sys.exit(r.exit_code)


@sandbox_group.command("ls")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ls_command(ctx: click.Context, as_json: bool) -> None:
    """List your sandboxes."""
    from shim.sandbox.sdk import Sandbox
    ctx.meta["kiln.json"] = as_json
    items = Sandbox.list(client=_client(ctx))
    if as_json:
        click.echo(json.dumps(items))
        return
    click.echo(f"{'ID':<20} {'IMAGE':<12} {'AGE':>8} {'MEMORY':>10} {'EXPIRES':>8}")
    for s in items:
        mem = s.get("memory_used_bytes")
        click.echo(f"{s['id']:<20} {s['image']:<12} {s['age_s']:>7.0f}s "
                   f"{(f'{mem / (1 << 20):.1f} MiB' if mem else '-'):>10} "
                   f"{s['expires_in_s']:>7.0f}s")


@sandbox_group.command("rm")
@click.argument("sandbox_ids", nargs=-1, required=True)
@click.pass_context
def rm_command(ctx: click.Context, sandbox_ids: tuple[str, ...]) -> None:
    """Kill and remove sandboxes."""
    c = _client(ctx)
    for sid in sandbox_ids:
        c.json("DELETE", f"/v1/sandboxes/{sid}")
        click.echo(sid)


@sandbox_group.command("snapshot")
@click.argument("sandbox_id")
@click.pass_context
def snapshot_command(ctx: click.Context, sandbox_id: str) -> None:
    """Save the sandbox (its files and run_code interpreters); print the snapshot's id, which
    `kiln sandbox create --snapshot ID` restores."""
    from shim.sandbox.sdk import Sandbox
    click.echo(Sandbox(_client(ctx), sandbox_id).snapshot().id)
