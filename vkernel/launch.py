"""A run's first process: run_guest (in this process, or supervised as root), dropping to the
guest's user, and what that process publishes about itself."""
from __future__ import annotations

import dataclasses
import gc
import os
import stat as st
import sys

from formats.errors import KilnError
from vkernel import caps, creds, imageuser, pidns
from vkernel.errors import VkernelError
from vkernel.runspec import RunSpec
from vkernel.runtime import Runtime, die_like



def run_guest(spec: RunSpec) -> int:
    """Run the guest to completion; the exit status as a shell sees it (128+N for signal N).

    Raises KilnError when the run cannot start (bad megabinary, hash refused,
    dynamically linked program...). Forked guest processes never return here:
    they end with the guest's status. With ``spec.timeout``, ``spec.tty`` or,
    as root, ``spec.pid_namespace`` this process becomes a supervisor and the
    guest runs in an isolated child (vkernel/supervisor.py).
    """
    if not spec.supervised and (spec.timeout is not None or spec.tty or
                                (spec.pid_namespace and pidns.possible())):
        from vkernel.supervisor import supervise
        return supervise(spec)
    run = None
    if spec.upper is None:                  # the run's own upper layer, in the state directory
        from vkernel.statedir import StateDir
        state = StateDir.open()
        try:
            run = state.new_run()
        finally:
            state.close()
        spec = dataclasses.replace(spec, upper=run.mkdir("upper", 0o755))
    try:
        return _run_here(spec)
    finally:
        if run is not None:
            run.remove()


def _run_here(spec: RunSpec) -> int:
    """The guest in this process (the supervisor's first process, or an unsupervised run)."""
    guard = None
    if spec.lockdown and spec.isolation is None:
        from vkernel.console import TerminalGuard
        guard = TerminalGuard()            # a guest must not leave the user's terminal changed
    rt = Runtime(spec)
    status, sig = 2, 0
    try:
        if spec.files:
            from vkernel import handoff
            handoff.place_files(rt)
        _take_user(rt)
        if spec.lockdown and spec.isolation is None:
            from vkernel import sandbox
            sandbox.lock_down()
        _publish_first(rt)
        if spec.ready_fd >= 0:
            from vkernel import handoff
            rt.preflight()
            handoff.ready_then_wait(spec)
        gc.freeze()                      # what start-up made stays; see vkernel/cli.py main
        gc.enable()
        status = rt.run()
        sig = rt.last_signal
        return status
    except BaseException as e:
        if rt.proc.is_forked_child:      # nobody above us to report it: say it and end
            if isinstance(e, KilnError):
                print(f"kiln: {e.message}", file=sys.stderr, flush=True)
                status = 127
            else:
                print(f"kiln: internal error in vkernel: {type(e).__name__}: {e}",
                      file=sys.stderr, flush=True)
        raise
    finally:
        child = rt.proc.is_forked_child
        if not child:
            creds.restore_host()         # vkernel tidies up (skeleton) as itself
            if guard is not None:
                guard.restore()
        rt.close()
        if child:
            die_like(status, sig)


def _take_user(rt: Runtime) -> None:
    """Give this (first guest) process the credentials of ``spec.user`` resolved in the image:
    real host ids when kiln runs as root (vkernel/creds.py), inside the run's user namespace
    when it has one (vkernel/sandbox.py); HOME from passwd unless set."""
    def read(path: str) -> bytes | None:
        try:
            return rt.vfs.read_file(path, 1 << 20)
        except OSError:
            return None
    iso = rt.spec.isolation
    if not rt.spec.user and os.geteuid() != 0:
        return                           # not root: the guest runs with the host user's ids
    user = imageuser.resolve_user(rt.spec.user or "0", read)
    imageuser.check_possible(user)
    if iso is not None and max(user.uid, user.gid, *user.groups) >= iso.id_count:
        raise VkernelError(f"cannot run the guest as uid {user.uid} gid {user.gid}: the run's "
                           f"user namespace maps ids 0..{iso.id_count - 1} only",
                           hint="give a smaller --user, or a larger 'kiln' range in /etc/subuid "
                                "and /etc/subgid")
    if not any(e.startswith("HOME=") for e in rt.spec.env):
        rt.spec = dataclasses.replace(rt.spec, env=(*rt.spec.env, f"HOME={user.home}"))
    if os.geteuid() != 0:
        return                           # the host user's ids, which check_possible accepted
    # The host checks creates in / against the upper layer's root: make it the image root's
    # (through the idmapped lower layer: the namespace's root, a host id of the run's range).
    low = os.fstat(rt.vfs.lower_fd)
    up = os.stat(rt.vfs.upper)
    if (up.st_uid, up.st_gid) != (low.st_uid, low.st_gid):   # (a process joining a run:
        os.chown(rt.vfs.upper, low.st_uid, low.st_gid)       # done, maybe read-only now)
    if st.S_IMODE(up.st_mode) != st.S_IMODE(low.st_mode):
        os.chmod(rt.vfs.upper, st.S_IMODE(low.st_mode))
    if iso is not None:
        if rt.vfs.skeleton is not None:
            rt.vfs.skeleton.hand_over(low.st_uid, low.st_gid)
        from vkernel import sandbox
        sandbox.drop(iso)                 # from here on, root is the namespace's root only
    spec = rt.spec
    given = caps.from_runtime(caps.Caps(*spec.cap_sets), user.uid, user.uid) \
        if spec.cap_sets else None
    creds.become(imageuser.creds_of(user), given, spec.cap_bounding)
    if spec.no_new_privs:
        creds.set_no_new_privs()
    pidns.die_with_supervisor()


def _publish_first(rt: Runtime) -> None:
    from vkernel import procfs
    rt.proc.comm = os.path.basename(rt.spec.argv[0]).encode("utf-8", "surrogateescape")[:15]
    procfs.publish(rt.vfs.skeleton, os.path.basename(rt.spec.argv[0]),
                   [a.encode() for a in rt.spec.argv])
