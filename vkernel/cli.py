"""The ``kiln`` command: run recompiled images, and inspect them.

Subcommands that belong to the recompiler (``kiln inspect``) are contributed
through the ``kiln.commands`` entry-point group so that vkernel never imports
the recompiler (docs/architecture.md, layer rules).

The command line is click's (:func:`command_group`). A ``kiln run`` whose
arguments are plain (every option spelled out and known, see
:func:`fast_run_params`) starts without importing click, which is a tenth of
``kiln run``'s start-up; anything else, including every error, help and
``--version``, goes through click.
"""
from __future__ import annotations

import gc
import sys
from pathlib import Path

from dataclasses import dataclass

from formats.errors import EXIT_BAD_INPUT, KilnError, user_report


def keep_bytecode() -> None:
    """Let Python keep the byte code of what kiln imports, in Kiln's cache, when the
    environment forbids writing it next to the sources (PYTHONDONTWRITEBYTECODE): otherwise
    every ``kiln run`` compiles vkernel afresh, about 0.1 s of its start-up. A byte-code
    location the user chose (PYTHONPYCACHEPREFIX) is kept."""
    if not sys.dont_write_bytecode:
        return
    if sys.pycache_prefix is None:
        from formats.cache import cache_root
        try:
            sys.pycache_prefix = str(cache_root() / "pycache")
        except RuntimeError:                     # no home directory: leave Python as it is
            return
    sys.dont_write_bytecode = False


def entry_points(*, group: str):  # -> importlib.metadata.EntryPoints
    """Installed entry points of ``group``; importlib.metadata is imported only when needed
    (about 30 ms, which ``kiln run --rootfs ... --megabinary ...`` does not spend)."""
    from importlib.metadata import entry_points as installed
    return installed(group=group)


def command_group():  # -> click.Group
    """The ``kiln`` click group with its ``run`` command (click is imported here)."""
    import click

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
        library an image holds. `kiln keygen` makes a key to sign with
        (`recompile --sign KEY`); a trust policy decides what `kiln run` starts,
        and `kiln audit verify` checks the audit log's hash chain. `kiln cache ls`
        shows what Kiln keeps in its cache.
        """

    @main.command("run", context_settings={"ignore_unknown_options": True})
    @_run_options(click)
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @_help_of(run)
    def run_command(**params: object) -> None:
        run(**params)  # type: ignore[arg-type]

    @main.command("cleanup")
    @click.option("--json", "as_json", is_flag=True, help="Print what was removed as JSON.")
    def cleanup_command(as_json: bool) -> None:
        """Remove what runs that were killed left in the state directory.

        Every run keeps its files under the state directory ($KILN_STATE, else
        /var/lib/kiln for root, ~/.local/state/kiln for others) while it lives, and
        removes them when it ends. A run killed with SIGKILL cannot: the next
        `kiln run` removes its leftovers, and so does this command. Live runs are
        never touched.
        """
        from vkernel.statedir import StateDir
        state = StateDir.open()
        try:
            gone = state.sweep()
            alive = [rid for rid, live in state.runs() if live]
        finally:
            state.close()
        if as_json:
            import json
            click.echo(json.dumps({"removed": gone, "running": alive, "state": str(state.path)}))
        else:
            click.echo(f"removed {len(gone)} stale run(s) from {state.path}; "
                       f"{len(alive)} run(s) still running")

    @main.group("audit")
    def audit_group() -> None:
        """Audit logs: what `kiln run --audit-log` (or the policy's audit_log) records."""

    @audit_group.command("verify")
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--head", default=None, metavar="HASH",
                  help="Also require a record hashing to HASH (the head an earlier verify "
                       "printed): the log was not cut short or rewritten since.")
    @click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
    @click.pass_context
    def audit_verify_command(ctx: click.Context, file: Path, head: str | None,
                             as_json: bool) -> None:
        """Check the hash chain of the audit log FILE.

        Each record holds the BLAKE3 of the record before it and a sequence
        number, so an edited, deleted, inserted or reordered record breaks the
        chain. Prints "ok, N records" and exits 0, or names the first broken
        link (line number and what is wrong) and exits 1.
        """
        import json
        from vkernel.audit import verify_chain
        ctx.meta["kiln.json"] = as_json
        report = verify_chain(file, head=head)
        click.echo(json.dumps(report.to_dict(), sort_keys=True) if as_json else report.render())
        sys.exit(0 if report.ok else 1)

    from vkernel.cachecmd import cache_group
    main.add_command(cache_group())
    return main


def _run_options(click):  # -> a decorator adding RUN_OPTIONS to the click command
    """The click options of ``kiln run``, made from :data:`RUN_OPTIONS`."""
    kinds = {
        "dir-path": dict(type=click.Path(file_okay=False, path_type=Path)),
        "file-path": dict(type=click.Path(dir_okay=False, path_type=Path)),
        "str": dict(default=None), "multi": dict(multiple=True), "flag": dict(is_flag=True),
        "float": dict(type=float, default=None),
        "count": dict(type=click.IntRange(min=1), default=None),
    }

    def add(f):
        for opt in reversed(RUN_OPTIONS):
            extra = dict(kinds[opt.kind])
            if opt.metavar:
                extra["metavar"] = opt.metavar
            f = click.option(*opt.names, opt.param, help=opt.help, **extra)(f)
        return f
    return add


def _help_of(documented):  # a decorator: click takes a command's help from its docstring
    def take(f):
        f.__doc__ = documented.__doc__
        return f
    return take


def main(argv: list[str] | None = None) -> None:
    """The ``kiln`` entry point: click's command line, or a plain ``kiln run`` directly
    (reporting as click's standalone mode and :class:`KilnGroup` would)."""
    keep_bytecode()
    args = list(sys.argv[1:] if argv is None else argv)
    params = fast_run_params(args)
    if params is None:
        command_group()(args=args, prog_name="kiln")
        return
    # A run's start-up makes objects that live as long as the run, and no garbage worth a
    # collection: the cyclic collector would walk them all again and again (about 20 ms of
    # `kiln run`). It starts once the guest is about to run (vkernel/launch.py).
    gc.disable()
    try:
        run(**params)  # type: ignore[arg-type]
    except KilnError as err:
        print(user_report(err), file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_INPUT)
    except (KeyboardInterrupt, EOFError):
        print("\nAborted!", file=sys.stderr, flush=True)
        sys.exit(1)


@dataclass(frozen=True)
class RunOption:
    """One ``kiln run`` option: click's declaration and the fast parser both come from it."""
    names: tuple[str, ...]
    param: str
    kind: str           # dir-path, file-path, str, multi, flag, float, count
    help: str
    metavar: str | None = None


RUN_OPTIONS: tuple[RunOption, ...] = (
    RunOption(("--rootfs",), "rootfs", "dir-path",
              "Run from an unpacked root directory instead of an IMAGE (never modified); "
              "needs --megabinary."),
    RunOption(("--megabinary",), "megabinary", "file-path",
              "With --rootfs: the megabinary produced by `recompile`."),
    RunOption(("--entrypoint",), "entrypoint", "str",
              "Replace the image's Entrypoint (CMD ARGS become its arguments).", "PATH"),
    RunOption(("-e", "--env"), "env", "multi",
              "Set an environment variable (after the image's Env; repeatable).", "K=V"),
    RunOption(("-w", "--workdir"), "workdir", "str",
              "Working directory in the guest (default: the image's WorkingDir, else /)."),
    RunOption(("-t", "--tty"), "tty", "flag",
              "Give the run a terminal of its own (a pseudo-terminal: the guest's stdio and "
              "/dev/tty), as `docker run -t`; without it /dev/tty is ENXIO."),
    RunOption(("--trace",), "trace", "flag", "Print each syscall on stderr, strace style."),
    RunOption(("--audit-log",), "audit_log", "file-path",
              "Append policy decisions (refusals) as hash-chained JSON lines to this file "
              "(default: the policy's audit_log, else none; `-`: one line each on stderr); "
              "`kiln audit verify FILE` checks the chain."),
    RunOption(("--policy",), "policy", "file-path",
              "The trust policy file (default: $KILN_POLICY, else /etc/kiln/policy.json when it "
              "exists); see below.", "PATH"),
    RunOption(("--upper", "--keep-upper"), "upper", "dir-path",
              "Keep the run's file changes (the upper layer, with whiteouts for deletions) in "
              "this directory (created if missing); default: the run's own, removed when it "
              "ends (as root: a tmpfs of --disk bytes)."),
    RunOption(("-v", "--volume"), "volumes", "multi",
              "Bind the host directory HOST at GUEST in the guest tree (repeatable); the guest "
              "reads and writes HOST itself, confined to it. OPTS, comma-separated: 'ro' refuses "
              "writes; 'idmap' (as root) lets guest ids be host ids there instead of the run's "
              "unprivileged ids. Set-id bits are never stored in a volume.",
              "HOST:GUEST[:OPTS]"),
    RunOption(("--timeout",), "timeout", "float",
              "Kill the whole guest process tree after SECONDS and exit 124 (as timeout(1)).",
              "SECONDS"),
    RunOption(("--pids-limit",), "pids_limit", "count",
              "At most N live guest processes; fork beyond that fails with EAGAIN.", "N"),
    RunOption(("--memory",), "memory", "str",
              "Memory of the whole run, vkernel's own included (suffix k, m or g; default 2g). "
              "As root it is the run's cgroup limit; guests get ENOMEM before reaching it. "
              "Without root it bounds each guest process's mappings.", "BYTES"),
    RunOption(("--disk",), "disk", "str",
              "Bytes the run's upper layer may hold (as root; default 1g); writes beyond fail "
              "with ENOSPC. The layer lives in memory and counts toward --memory.", "BYTES"),
    RunOption(("-p", "--publish"), "publish", "multi",
              "Expose the guest's TCP port GUEST_PORT at HOST_IP:HOST_PORT of the host "
              "(repeatable; HOST_IP defaults to 127.0.0.1, an IPv6 one goes in brackets). "
              "Host clients reach the guest directly; the guest sees their addresses.",
              "[HOST_IP:]HOST_PORT:GUEST_PORT"),
    RunOption(("--allow-net",), "allow_net", "multi",
              "Let guests connect out to DEST through the host's network (repeatable): a host "
              "name (resolved when the run starts), an IP address or a CIDR, with an optional "
              "port (an IPv6 one in brackets). Any other destination fails as an unreachable "
              "network (ENETUNREACH), with an audit record.", "DEST[:PORT]"),
    RunOption(("--network",), "network", "str",
              "'host': the guest uses the host's network as it is (no isolation, the explicit "
              "opt-out). Default: each run has a network of its own whose only interface is "
              "its loopback, shared by its processes alone (as root; without root a run has "
              "no internet sockets).", "MODE"),
    RunOption(("--cap-add",), "cap_add", "multi",
              "Give the run's root this capability too (repeatable; a name as `docker run "
              "--cap-add` takes it: NET_ADMIN, CAP_SYS_PTRACE, ALL). Guests start with runc's "
              "default set: CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP "
              "SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE; a non-root user holds none "
              "of them. They act on the run's own namespaces only.", "CAP"),
    RunOption(("--cap-drop",), "cap_drop", "multi",
              "Take this capability away from the run (repeatable; ALL drops every one).",
              "CAP"),
    RunOption(("-u", "--user"), "user", "str",
              "Run as this user (uid, uid:gid, name or name:group, names from the image's "
              "/etc/passwd and /etc/group), replacing the image's User; default: the image's "
              "User, else root. As root, guest ids are a user namespace's, mapped to "
              "unprivileged host ids.", "USER[:GROUP]"),
)
_RUN_OPTIONS = {name: (o.param, o.kind) for o in RUN_OPTIONS for name in o.names}
_RUN_DEFAULTS: dict[str, object] = {
    o.param: (() if o.kind == "multi" else False if o.kind == "flag" else None)
    for o in RUN_OPTIONS}
DEFAULT_MEMORY = "2g"
DEFAULT_DISK = "1g"


def fast_run_params(args: list[str]) -> dict[str, object] | None:
    """The parameters click would pass to ``kiln run`` for ``args`` (which start with
    ``run``), when they are plain enough to parse without click: options spelled out
    (``--name VALUE``, ``--name=VALUE`` or ``-x VALUE``), values that click converts without
    complaint, positional arguments, and everything after ``--`` as arguments. None for
    anything else (help, errors, unusual spellings): click parses those."""
    import os
    import stat
    if not args or args[0] != "run":
        return None
    params: dict[str, object] = dict(_RUN_DEFAULTS)
    multi: dict[str, list[str]] = {o.param: [] for o in RUN_OPTIONS if o.kind == "multi"}
    positional: list[str] = []
    i = 1
    while i < len(args):
        tok = args[i]
        i += 1
        if tok == "--":
            positional.extend(args[i:])
            break
        if not tok.startswith("-") or tok == "-":
            if tok == "-":
                return None
            positional.append(tok)
            continue
        name, eq, value = tok.partition("=")
        if name not in _RUN_OPTIONS or (eq and not name.startswith("--")):
            return None
        param, kind = _RUN_OPTIONS[name]
        if kind == "flag":
            if eq:
                return None
            params[param] = True
            continue
        if not eq:
            if i >= len(args):
                return None
            value = args[i]
            i += 1
        if not value or value.startswith("-"):
            return None
        if kind == "multi":
            multi[param].append(value)
        elif kind == "str":
            params[param] = value
        elif kind == "float":
            try:
                params[param] = float(value)
            except ValueError:
                return None
        elif kind == "count":
            if not value.isdigit() or int(value) < 1:
                return None
            params[param] = int(value)
        else:                                  # click.Path(file_okay= / dir_okay=False)
            try:
                st = os.stat(value)
            except OSError:
                st = None
            if st is not None:
                if (kind == "dir-path" and stat.S_ISREG(st.st_mode)) or \
                        (kind == "file-path" and stat.S_ISDIR(st.st_mode)) or \
                        not os.access(value, os.R_OK):
                    return None
            params[param] = Path(value)
    for name, values in multi.items():
        params[name] = tuple(values)
    params["args"] = tuple(positional)
    return params


def _image_bundle(image: str) -> Path:
    """The OCI runtime bundle for a recompiled image: the cached one of an OCI layout found
    from its index alone, else the recompiler's plugin (which reads and checks the image and
    builds the bundle if needed)."""
    from formats.bundles import cached_layout_bundle
    from formats.cache import cache_root
    cached = cached_layout_bundle(Path(image), cache_root())
    if cached is not None:
        return cached
    eps = [ep for ep in entry_points(group="kiln.image_bundles") if ep.name == "prepare"]
    if not eps:
        raise KilnError("running an image needs Kiln's recompiler package (kiln.image_bundles)",
                        hint="install Kiln fully (scripts/setup.sh), or pass --rootfs and --megabinary")
    try:
        return Path(eps[0].load()(image))
    except OSError as e:
        raise KilnError(f"cannot prepare {image} to run: {e.strerror or e}",
                        hint="check free space and permissions of the cache directory (~/.cache/kiln)") from None


def _bundle_spec(bundle: Path) -> dict:
    import json
    try:
        return json.loads((bundle / "config.json").read_text())
    except (OSError, ValueError) as e:
        raise KilnError(f"{bundle}/config.json is unreadable: {e}",
                        hint="delete the bundle directory from the cache and run again") from None


def run(rootfs: Path | None, megabinary: Path | None, entrypoint: str | None,
        env: tuple[str, ...], workdir: str | None, tty: bool, trace: bool,
        audit_log: Path | None, upper: Path | None, volumes: tuple[str, ...],
        timeout: float | None, pids_limit: int | None, memory: str | None, disk: str | None,
        user: str | None, args: tuple[str, ...], policy: Path | None = None,
        publish: tuple[str, ...] = (), allow_net: tuple[str, ...] = (),
        network: str | None = None, cap_add: tuple[str, ...] = (),
        cap_drop: tuple[str, ...] = ()) -> None:
    """Run a program of a recompiled image: kiln run IMAGE [-- CMD ARGS...].

    IMAGE is the output of `recompile` (OCI layout, OCI archive or
    docker-archive). Without CMD the image's Entrypoint and Cmd run; with CMD,
    CMD replaces Cmd (as `docker run` does) and the Entrypoint stays unless
    --entrypoint replaces it. The image's Env and WorkingDir apply, --env and
    --workdir override them. stdin, stdout and stderr pass through, and kiln
    exits with the guest's status (128+N when signal N ended it, with a
    message like a shell's).

    The image's files are the read-only lower layer; the run writes to its
    own upper layer. Only programs whose BLAKE3 is in the megabinary's index
    can be executed; anything else is refused and audited.

    As root, each run is isolated as a container is, and more: its own pid,
    mount and user namespaces (guest root is an unprivileged host id), a
    cgroup for --memory, a tmpfs of --disk bytes for its upper layer, and a
    seccomp filter on every process. Its state lives under /var/lib/kiln
    ($KILN_STATE) while it runs; `kiln cleanup` removes what a killed run left.

    The guest's most frequent syscalls (reads and writes, epoll, futex wakes,
    the clocks) are served by vkernel's native gate without entering Python
    (docs/architecture.md); KILN_SYSCALL_GATE=0 in kiln's environment serves
    every syscall in Python instead, and KILN_GATE_STATS=FILE appends, as each
    guest process ends, its pid and the counts of syscalls the gate served and
    passed on.

    Trust policy. Before anything runs, the megabinary is checked against
    the policy (--policy, $KILN_POLICY, else /etc/kiln/policy.json; without
    any, every megabinary may run). A refusal is an audit record and exit
    status 2. The policy is JSON; every key but "version" is optional:

    \b
      {"version": 1,
       "require_signature": true,    # only megabinaries signed by a trusted key
       "trusted_keys": [{"name": "ci", "path": "keys/ci.pub"},
                        {"name": "rel", "public_key": "<base64 from keygen>"}],
       "allow": ["blake3:<digest>"], # if given, only these megabinaries
       "deny": ["blake3:<digest>"],  # never these
       "kill_switch": false,         # true: refuse every new run
       "audit_log": "/var/log/kiln/audit.jsonl"}

    Paths are relative to the policy file. A signature is the file
    /.kiln/megabinary.sig that `recompile --sign KEY` adds (with --megabinary
    FILE.kmb: FILE.sig beside it); `kiln keygen` makes keys. A signature that
    is present must be well-formed and name this megabinary, and verify when
    its key is trusted.
    """
    from vkernel.launch import run_guest
    from vkernel.runtime import RunSpec
    from vkernel.trust import load_policy
    trust_policy = load_policy(policy)
    net = _network_policy(network, publish, allow_net)
    bounding = _capabilities(cap_add, cap_drop)
    vols = tuple(_parse_volume(v) for v in volumes)
    mem = _parse_bytes(memory if memory is not None else DEFAULT_MEMORY, "--memory")
    disk_bytes = _parse_bytes(disk, "--disk") if disk is not None else 0
    if disk is not None and upper is not None:
        raise KilnError("--disk bounds the run's own upper layer, not an --upper directory",
                        hint="leave one of them out: the file system of --upper sets its limit")
    if timeout is not None and timeout <= 0:
        raise KilnError(f"--timeout {timeout:g} must be a positive number of seconds")
    for item in env:
        if "=" not in item or item.startswith("="):
            raise KilnError(f"--env {item!r} is not of the form KEY=VALUE",
                            hint="write --env NAME=value")
    image_env: list[str] = []
    image_workdir = "/"
    image_user = ""
    rootfs_given = rootfs is not None or megabinary is not None
    if rootfs_given:
        if rootfs is None or megabinary is None:
            raise KilnError("--rootfs and --megabinary go together",
                            hint="pass both, or pass a recompiled IMAGE instead")
        command = list(args)
        if entrypoint:
            command = [entrypoint, *command]
        if not command:
            raise KilnError("no command given", hint="kiln run --rootfs DIR --megabinary FILE -- CMD ARGS")
    else:
        if not args:
            raise KilnError("no IMAGE given", hint="kiln run IMAGE [-- CMD ARGS]; see kiln run --help")
        bundle = _image_bundle(args[0])
        spec_json = _bundle_spec(bundle)
        rootfs = bundle / spec_json.get("root", {}).get("path", "rootfs")
        annotations = spec_json.get("annotations", {})
        megabinary = rootfs / annotations.get("io.kiln.megabinary.path", "/.kiln/megabinary.kmb").lstrip("/")
        process = spec_json.get("process", {})
        image_env = list(process.get("env", []))
        image_workdir = process.get("cwd") or "/"
        ids = process.get("user") or {}
        image_user = annotations.get("io.kiln.image.user", "")   # as written: supplementary groups
        if not image_user and (ids.get("uid") or ids.get("gid")):  # an older bundle: its ids
            image_user = f"{int(ids.get('uid', 0))}:{int(ids.get('gid', 0))}"
        import json as _json
        image_entry = _json.loads(annotations.get("io.kiln.image.entrypoint", "[]"))
        image_cmd = _json.loads(annotations.get("io.kiln.image.cmd", "[]"))
        entry = [entrypoint] if entrypoint else image_entry
        command = entry + (list(args[1:]) if len(args) > 1 else ([] if entrypoint else image_cmd))
        if not command:
            raise KilnError(f"{args[0]} has no Entrypoint or Cmd and no command was given",
                            hint=f"kiln run {args[0]} -- CMD ARGS")
    if audit_log is None and trust_policy.audit_log is not None:
        audit_log = Path(trust_policy.audit_log)
    # Before the run leaves any trace (an --upper directory, state, namespaces).
    digest = _check_trust(trust_policy, megabinary, audit_log, None if rootfs_given else args[0])
    workdir = workdir or image_workdir
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
    merged: dict[str, str] = {}
    for item in [*image_env, *env]:
        key, _, value = item.partition("=")
        merged[key] = value
    spec = RunSpec(rootfs=rootfs, megabinary=megabinary, argv=tuple(command),
                   env=tuple(f"{k}={v}" for k, v in merged.items()),
                   workdir=workdir, trace=trace, audit_log=audit_log, upper=upper,
                   volumes=vols, timeout=timeout, pids_limit=pids_limit or 0, memory=mem,
                   user=image_user if user is None else user, pid_namespace=True,
                   disk=disk_bytes, tty=tty, lockdown=True, megabinary_digest=digest, net=net,
                   cap_bounding=bounding)
    try:
        status = run_guest(spec)
    except KilnError:
        raise
    except Exception as e:  # never a traceback for the user
        raise KilnError(f"internal error in vkernel: {type(e).__name__}: {e}",
                        hint="please report this with the command line and the megabinary") from None
    _exit_now(status)


def _capabilities(add: tuple[str, ...], drop: tuple[str, ...]) -> int:
    """The run's bounding set as docker run makes it: runc's default with ``add``, without
    ``drop``; ``--cap-drop ALL`` starts from none, so what ``--cap-add`` names is all there is."""
    import os
    from vkernel import caps
    everything = any(d.strip().upper() == "ALL" for d in drop)
    try:
        added = caps.parse(add, "--cap-add")
        dropped = caps.parse([d for d in drop if d.strip().upper() != "ALL"], "--cap-drop")
    except ValueError as e:
        raise KilnError(str(e), hint="names as in capabilities(7), with or without CAP_: "
                                     "NET_ADMIN, SYS_PTRACE, ALL") from None
    if (add or drop) and os.geteuid() != 0:
        raise KilnError("--cap-add and --cap-drop need kiln to run as root",
                        hint="without root the guest runs as your user and holds no "
                             "capabilities")
    return ((0 if everything else caps.CONTAINER_DEFAULT) | added) & ~dropped


def _network_policy(network: str | None, publish: tuple[str, ...], allow_net: tuple[str, ...]):
    """The run's NetPolicy (vkernel/netpolicy.py); --publish and --allow-net need the run's
    own network namespace, so root."""
    from vkernel import netpolicy, pidns
    net = netpolicy.parse(network, publish, allow_net)
    if (publish or allow_net) and not pidns.possible():
        raise KilnError("--publish and --allow-net need kiln to run as root: a run's network "
                        "is a network namespace of its own",
                        hint="run kiln as root, or pass --network host to use the host's network")
    return net


def _check_trust(trust_policy, megabinary: Path, audit_log: Path | None,
                 image: str | None) -> str:
    """The digest of the megabinary the policy accepts ("" without a policy), or TrustRefused."""
    if not trust_policy.active:
        return ""
    from vkernel.audit import AuditLog
    from vkernel.trust import check_megabinary
    audit = AuditLog(audit_log)
    try:
        return check_megabinary(trust_policy, megabinary, audit, subject=image).digest
    finally:
        audit.close()


def _exit_now(status: int) -> None:
    """End kiln with ``status`` once the run has tidied up: flush stdio and skip the
    interpreter's teardown of every imported module (about 20 ms, on every run)."""
    import os
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(status)


def _parse_volume(text: str):  # -> vkernel.vfs.Volume
    from vkernel.vfs import Volume
    parts = text.split(":")
    readonly = idmap = False
    if len(parts) == 3:
        flags = parts[2].split(",")
        if not set(flags) <= {"ro", "rw", "idmap"} or {"ro", "rw"} <= set(flags):
            raise KilnError(f"--volume {text!r}: unknown options {parts[2]!r}",
                            hint="options are ro, rw and idmap, e.g. --volume ./data:/data:ro,idmap")
        readonly, idmap = "ro" in flags, "idmap" in flags
        parts = parts[:2]
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise KilnError(f"--volume {text!r} is not of the form HOST:GUEST[:OPTIONS]",
                        hint="for example --volume ./data:/data:ro")
    host, guest = Path(parts[0]), parts[1]
    if not host.is_dir():
        raise KilnError(f"--volume {text!r}: the host directory {host} does not exist",
                        hint="create it first, or give an existing directory")
    if not guest.startswith("/") or guest.rstrip("/") == "":
        raise KilnError(f"--volume {text!r}: the guest path must be absolute and not /",
                        hint="for example --volume ./data:/data")
    return Volume(str(host.resolve()), guest, readonly, idmap)


def _parse_bytes(text: str, option: str = "--memory") -> int:
    units = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower()
    num = t.rstrip("bkmg")
    suffix = t[len(num):].rstrip("b") or ""
    try:
        value = int(float(num) * units[suffix])
    except (ValueError, KeyError):
        raise KilnError(f"{option} {text!r} is not a size", hint="write e.g. 64m, 1g or 1048576") \
            from None
    if value <= 0:
        raise KilnError(f"{option} {text!r} must be positive")
    return value


if __name__ == "__main__":  # pragma: no cover
    main()
