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

import sys
from pathlib import Path

from formats.errors import EXIT_BAD_INPUT, KilnError, user_report


def keep_bytecode() -> None:
    """Let Python keep the byte code of what kiln imports, in Kiln's cache, when the
    environment forbids writing it next to the sources (PYTHONDONTWRITEBYTECODE): otherwise
    every ``kiln run`` compiles vkernel afresh, about 0.1 s of its start-up. A byte-code
    location the user chose (PYTHONPYCACHEPREFIX) is kept."""
    if not sys.dont_write_bytecode:
        return
    if sys.pycache_prefix is None:
        from vkernel.verified import cache_root
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
        library an image holds.
        """

    @main.command("run", context_settings={"ignore_unknown_options": True})
    @click.option("--rootfs", type=click.Path(file_okay=False, path_type=Path),
                  help="Run from an unpacked root directory instead of an IMAGE (never modified); "
                       "needs --megabinary.")
    @click.option("--megabinary", type=click.Path(dir_okay=False, path_type=Path),
                  help="With --rootfs: the megabinary produced by `recompile`.")
    @click.option("--entrypoint", default=None, metavar="PATH",
                  help="Replace the image's Entrypoint (CMD ARGS become its arguments).")
    @click.option("-e", "--env", "env", multiple=True, metavar="K=V",
                  help="Set an environment variable (after the image's Env; repeatable).")
    @click.option("-w", "--workdir", default=None,
                  help="Working directory in the guest (default: the image's WorkingDir, else /).")
    @click.option("--trace", is_flag=True, help="Print each syscall on stderr, strace style.")
    @click.option("--audit-log", type=click.Path(dir_okay=False, path_type=Path),
                  help="Append policy decisions (refusals) as JSON lines to this file.")
    @click.option("--upper", "--keep-upper", "upper", type=click.Path(file_okay=False, path_type=Path),
                  help="Keep the run's file changes (the upper layer, with whiteouts for deletions) "
                       "in this directory (created if missing); default: a temporary directory "
                       "removed when the run ends.")
    @click.option("-v", "--volume", "volumes", multiple=True, metavar="HOST:GUEST[:ro]",
                  help="Bind the host directory HOST at GUEST in the guest tree (repeatable); the "
                       "guest reads and writes HOST itself, confined to it; ':ro' refuses writes.")
    @click.option("--timeout", type=float, default=None, metavar="SECONDS",
                  help="Kill the whole guest process tree after SECONDS and exit 124 (as timeout(1)).")
    @click.option("--pids-limit", type=click.IntRange(min=1), default=None, metavar="N",
                  help="At most N live guest processes; fork beyond that fails with EAGAIN.")
    @click.option("--memory", "memory", default=None, metavar="BYTES",
                  help="At most BYTES of mapped memory per guest process (suffix k, m or g); "
                       "mmap and brk beyond it fail with ENOMEM.")
    @click.option("-u", "--user", "user", default=None, metavar="USER[:GROUP]",
                  help="Run as this user (uid, uid:gid, name or name:group, names from the image's "
                       "/etc/passwd and /etc/group), replacing the image's User; default: the "
                       "image's User, else root. Guest ids are real host ids (kiln runs as root).")
    @click.argument("args", nargs=-1, type=click.UNPROCESSED)
    @_help_of(run)
    def run_command(**params: object) -> None:
        run(**params)  # type: ignore[arg-type]

    return main


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
    try:
        run(**params)  # type: ignore[arg-type]
    except KilnError as err:
        print(user_report(err), file=sys.stderr, flush=True)
        sys.exit(EXIT_BAD_INPUT)
    except (KeyboardInterrupt, EOFError):
        print("\nAborted!", file=sys.stderr, flush=True)
        sys.exit(1)


# `kiln run` options as click declares them in command_group(), for fast_run_params:
# option spelling -> (parameter name, how its value converts).
_RUN_OPTIONS: dict[str, tuple[str, str]] = {
    "--rootfs": ("rootfs", "dir-path"), "--megabinary": ("megabinary", "file-path"),
    "--entrypoint": ("entrypoint", "str"), "-e": ("env", "multi"), "--env": ("env", "multi"),
    "-w": ("workdir", "str"), "--workdir": ("workdir", "str"), "--trace": ("trace", "flag"),
    "--audit-log": ("audit_log", "file-path"), "--upper": ("upper", "dir-path"),
    "--keep-upper": ("upper", "dir-path"), "-v": ("volumes", "multi"),
    "--volume": ("volumes", "multi"), "--timeout": ("timeout", "float"),
    "--pids-limit": ("pids_limit", "count"), "--memory": ("memory", "str"),
    "-u": ("user", "str"), "--user": ("user", "str"),
}
_RUN_DEFAULTS: dict[str, object] = {
    "rootfs": None, "megabinary": None, "entrypoint": None, "env": (), "workdir": None,
    "trace": False, "audit_log": None, "upper": None, "volumes": (), "timeout": None,
    "pids_limit": None, "memory": None, "user": None,
}


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
    multi: dict[str, list[str]] = {"env": [], "volumes": []}
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
    params["env"] = tuple(multi["env"])
    params["volumes"] = tuple(multi["volumes"])
    params["args"] = tuple(positional)
    return params


def _image_bundle(image: str) -> Path:
    """The OCI runtime bundle for a recompiled image, from the recompiler's plugin."""
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
        env: tuple[str, ...], workdir: str | None, trace: bool,
        audit_log: Path | None, upper: Path | None, volumes: tuple[str, ...],
        timeout: float | None, pids_limit: int | None, memory: str | None,
        user: str | None, args: tuple[str, ...]) -> None:
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
    """
    from vkernel.runtime import RunSpec, run_guest
    vols = tuple(_parse_volume(v) for v in volumes)
    mem = _parse_bytes(memory) if memory is not None else 0
    if timeout is not None and timeout <= 0:
        raise KilnError(f"--timeout {timeout:g} must be a positive number of seconds")
    for item in env:
        if "=" not in item or item.startswith("="):
            raise KilnError(f"--env {item!r} is not of the form KEY=VALUE",
                            hint="write --env NAME=value")
    image_env: list[str] = []
    image_workdir = "/"
    image_user = ""
    if rootfs is not None or megabinary is not None:
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
                   user=image_user if user is None else user, pid_namespace=True)
    try:
        status = run_guest(spec)
    except KilnError:
        raise
    except Exception as e:  # never a traceback for the user
        raise KilnError(f"internal error in vkernel: {type(e).__name__}: {e}",
                        hint="please report this with the command line and the megabinary") from None
    _exit_now(status)


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
    readonly = False
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        readonly = parts[2] == "ro"
        parts = parts[:2]
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise KilnError(f"--volume {text!r} is not of the form HOST:GUEST[:ro]",
                        hint="for example --volume ./data:/data:ro")
    host, guest = Path(parts[0]), parts[1]
    if not host.is_dir():
        raise KilnError(f"--volume {text!r}: the host directory {host} does not exist",
                        hint="create it first, or give an existing directory")
    if not guest.startswith("/") or guest.rstrip("/") == "":
        raise KilnError(f"--volume {text!r}: the guest path must be absolute and not /",
                        hint="for example --volume ./data:/data")
    return Volume(str(host.resolve()), guest, readonly)


def _parse_bytes(text: str) -> int:
    units = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower()
    num = t.rstrip("bkmg")
    suffix = t[len(num):].rstrip("b") or ""
    try:
        value = int(float(num) * units[suffix])
    except (ValueError, KeyError):
        raise KilnError(f"--memory {text!r} is not a size", hint="write e.g. 64m, 1g or 1048576") \
            from None
    if value <= 0:
        raise KilnError(f"--memory {text!r} must be positive")
    return value


if __name__ == "__main__":  # pragma: no cover
    main()
