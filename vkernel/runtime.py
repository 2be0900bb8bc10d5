"""Run a guest: load the AOT module, map the program, serve syscalls until it exits or execs."""
from __future__ import annotations

import ctypes
import functools
import os
import resource
import signal as hsignal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import wasmtime

from formats import abi
from formats.errors import KilnError
from vkernel import creds, gate, robust, signals, threads
from vkernel.audit import AuditLog
from vkernel.closures import trampoline_jump
from vkernel.cpustate import ControlMemory
from vkernel.engine import load_module, make_engine
from vkernel.instances import GuestCode, GuestMemory, gate_report, host_functions
from vkernel.errors import GuestExec, GuestExit, VkernelError
from vkernel.faults import FAULT_SI_CODE, fault_exit
from vkernel.fdtable import FdTable
from vkernel.kernel import GuestLimits, Kernel, ProcessState, SignalAction
from vkernel.thread import ThreadState
from vkernel.proctree import become_subreaper
from vkernel.elf import parse_elf
from vkernel.loader import Interpreter, build_stack, find_interpreter, load_elf
from vkernel.memory import AddressSpace
from vkernel.netpolicy import ISOLATED
from vkernel.policy import ExecPolicy, UnitInfo
from vkernel.syscalls.table import DISPATCH, TABLE
from vkernel.syscalls.trace import format_call
from vkernel.vfs import Vfs

from vkernel.runspec import DEFAULT_PATH, RunSpec  # noqa: F401  (RunSpec: its long-time home)

if TYPE_CHECKING:
    from formats.megabinary import Megabinary


def _memory_view(mem: wasmtime.Memory, store: wasmtime.Store) -> tuple[memoryview, int]:
    base = ctypes.cast(mem.data_ptr(store), ctypes.c_void_p).value or 0
    size = mem.data_len(store)
    return memoryview((ctypes.c_ubyte * size).from_address(base)).cast("B"), base


@dataclass(frozen=True)
class LoadedCode:
    """A megabinary opened and checked, with every module deserialized: what a run loads
    before anything else. A process that forks runs from it (a sandbox zygote, shim/sandbox)
    loads it once with :func:`load_code` and gives it to each :class:`Runtime`."""
    mb: "Megabinary"
    engine: wasmtime.Engine
    modules: dict[str, wasmtime.Module]
    units: tuple


def load_code(spec: "RunSpec") -> LoadedCode:
    """Open ``spec.megabinary`` (its digest pinned by ``spec.megabinary_digest``), check its
    INDEX and deserialize every module."""
    from formats.megabinary import read_megabinary
    from vkernel.verified import TrustDir, unit_table
    # The INDEX is hash-checked here; its decoding and schema check are kept between runs
    # (vkernel/verified.py) like the AOT artifact's hash check.
    mb = read_megabinary(spec.megabinary, check_index=False)
    if spec.megabinary_digest and mb.digest != spec.megabinary_digest:
        mb.close()
        raise VkernelError(f"the megabinary {spec.megabinary} changed after the trust check "
                           f"(it has digest {mb.digest}, the policy accepted "
                           f"{spec.megabinary_digest})",
                           hint="the file was replaced while kiln started; run again")
    trust = TrustDir.open()
    try:
        units = unit_table(mb, trust)
        engine = make_engine()
        # Every module is mapped now: once the run is locked down (vkernel/sandbox.py) no
        # process may map executable memory, and a library may be dlopen'ed any time.
        modules = {abi.CORE_MODULE: load_module(engine, mb, trust)}
        for u in units:
            modules[u.blake3.hex()] = load_module(engine, mb, trust, u.blake3.hex())
    except BaseException:
        mb.close()
        raise
    finally:
        if trust is not None:
            trust.close()
    return LoadedCode(mb, engine, modules, tuple(units))


@dataclass(frozen=True)
class GuestInstance:
    """A guest process's store: the core instantiated, the kernel serving its imports."""
    store: wasmtime.Store
    kernel: Kernel
    code: GuestCode


@dataclass(frozen=True)
class PreparedProgram:
    """A program loaded by :meth:`Runtime.prepare`, to be started once in a forked child."""
    path: str                              # canonical guest path
    identity: tuple[int, ...]              # (dev, inode, size, mtime_ns, ctime_ns) when checked
    interp_path: str | None
    interp_identity: tuple[int, ...] | None
    instance: GuestInstance
    image: Any                             # vkernel.loader's loaded image
    interp: Any


class Runtime:
    """One guest process tree's top level (a forked child keeps its copy)."""

    def __init__(self, spec: RunSpec, code: LoadedCode | None = None) -> None:
        self.spec = spec
        if not Path(spec.rootfs).is_dir():
            raise VkernelError(f"rootfs {spec.rootfs} is not a directory",
                               hint="pass the unpacked image root with --rootfs")
        if not spec.argv:
            raise VkernelError("no command given", hint="kiln run ... -- CMD ARGS")
        code = code or load_code(spec)
        self.mb, self.engine, self.modules = code.mb, code.engine, code.modules
        units = list(code.units)
        self.audit = AuditLog(spec.audit_log)
        self.audit.open()                 # now: later the run may not reach the path
        self.policy = ExecPolicy(units, self.audit)
        if spec.upper is None:
            raise VkernelError("no upper layer given", hint="run_guest makes one (RunSpec.upper)")
        self.upper = Path(spec.upper)
        from vkernel.sandbox import devpts_of
        self.vfs = Vfs(spec.rootfs, self.upper, spec.volumes, system=True, tty=spec.tty,
                       skeleton=spec.isolation.skeleton or None if spec.isolation else None,
                       devpts=devpts_of(spec.isolation))
        self.fds = FdTable.with_stdio()
        self.proc = ProcessState(cwd=spec.workdir or "/", fds=self.fds)
        self.thread = ThreadState(tid=os.getpid())     # the first thread (its mask survives exec)
        from vkernel import netrun
        policy = spec.net
        if policy.mode == ISOLATED and not spec.net_namespace:
            policy = netrun.without_namespace(policy)
        self.net = netrun.make(policy, spec.isolation is not None, spec.net_broker_fd,
                               spec.net_published)
        for res, soft, _ in spec.rlimits:
            if res == resource.RLIMIT_NOFILE:
                self.fds.limit = min(soft, 1 << 20)
        # Signals ignored when kiln started stay ignored for the guest, as across execve.
        self._host_signals = signals.save_host()
        ignored = signals.inherited_ignored()
        for sig in signals.MIRRORED:
            if ignored & signals.bit(sig):
                self.proc.sigactions[sig] = SignalAction(handler=signals.SIG_IGN)
        # No core dumps of the host process (a 4 GiB reservation) when a guest dies of a
        # core-action signal; the guest still sees its own RLIMIT_CORE.
        core = resource.getrlimit(resource.RLIMIT_CORE)
        self.proc.rlimits[resource.RLIMIT_CORE] = tuple(  # type: ignore[assignment]
            0xFFFF_FFFF_FFFF_FFFF if v == resource.RLIM_INFINITY else v for v in core)
        resource.setrlimit(resource.RLIMIT_CORE, (0, core[1]))
        if spec.hostname:
            self.proc.nodename = spec.hostname
        for res, soft, hard in spec.rlimits:        # what the guest sees (and the fd table obeys)
            self.proc.rlimits[res] = (soft, hard)
        self.proc.tree_root = spec.tree_root or os.getpid()
        self.proc.tree_root_is_supervisor = bool(spec.tree_root)
        if not spec.tree_root:
            become_subreaper()          # orphans stay in the guest tree (kill, --pids-limit)
        if spec.pids_limit or spec.memory or spec.run_memory is not None:
            lock_fd = -1
            if spec.pids_limit:
                import tempfile
                lock_fd = os.open(tempfile.gettempdir(), os.O_TMPFILE | os.O_RDWR, 0o600)
            run_wide = spec.run_memory.memory if spec.run_memory is not None else 0
            self.proc.limits = GuestLimits(pids=spec.pids_limit, memory=spec.memory or run_wide,
                                           lock_fd=lock_fd)
        self.kernel: Kernel | None = None
        self.last_signal = 0
        self.prepared: PreparedProgram | None = None
        """A program :meth:`prepare` loaded; the first program run uses it if it is that file."""

    def close(self) -> None:
        self.fds.close_all()
        if not self.proc.is_forked_child:
            self.net.close()
        self.vfs.close()
        self.audit.close()
        self.mb.close()
        if not self.proc.is_forked_child:
            # A caller in this process (tests, an agent host) gets its signal setup back.
            signals.restore_host(self._host_signals)
            signals.on_fatal = None
            signals.remove_wakeup()
            signals.attach(None, None)
            if self.proc.limits is not None and self.proc.limits.lock_fd >= 0:
                os.close(self.proc.limits.lock_fd)

    def _interpreter(self, path: str, data: bytes) -> Interpreter | None:
        """The checked PT_INTERP of the first program, read through the run's file tree."""
        def open_file(p: str) -> tuple[str, bytes]:
            h = self.vfs.open(p, os.O_RDONLY)
            try:
                return self.vfs.guest_path_of(h), os.pread(h, max(os.fstat(h).st_size, 0), 0)
            finally:
                os.close(h)
        img = parse_elf(data, path)
        try:
            return find_interpreter(img, open_file, self.policy.check_exec)
        except OSError as e:
            raise VkernelError(f"cannot run {path}: its interpreter {img.interp}: {e.strerror}",
                               hint="the image lacks the dynamic linker the program names "
                                    "(PT_INTERP): install its C library in the image") from None

    def unit_module(self, unit: UnitInfo) -> wasmtime.Module:
        """The deserialized module of ``unit``."""
        return self.modules[unit.blake3.hex()]

    # -- program lookup -----------------------------------------------------------
    def resolve_command(self, name: str, env: list[bytes]) -> str:
        if "/" in name:
            return name if name.startswith("/") else self.proc.cwd.rstrip("/") + "/" + name
        path = DEFAULT_PATH
        for e in env:
            if e.startswith(b"PATH="):
                path = e[5:].decode("utf-8", "surrogateescape")
        for d in path.split(":"):
            cand = (d or ".").rstrip("/") + "/" + name
            try:
                if self.vfs.stat(cand).st_mode & 0o111:
                    return cand
            except OSError:
                continue
        raise VkernelError(f"{name}: command not found in the image (PATH={path})",
                           hint="give the program's absolute path inside the rootfs")

    # -- one program ------------------------------------------------------------------
    def _instance(self, thread: ThreadState | None = None,
                  guest: GuestMemory | None = None) -> "GuestInstance":
        """A fresh store with the core module instantiated and the kernel serving its imports:
        a guest process with nothing loaded yet; with ``guest`` (the process's guest memory),
        a new ``thread`` of the process instead."""
        store = wasmtime.Store(self.engine)
        # The kernel serves the module's imports, so it exists first; its memories are the
        # module's own (defined and exported by it, so lifted code addresses them directly).
        k = Kernel(space=None, ctl=None, vfs=self.vfs, fds=self.fds, policy=self.policy,
                   audit=self.audit, proc=self.proc, table=TABLE, dispatch=DISPATCH,
                   trace=format_call if self.spec.trace else None,
                   thread=thread or self.thread)
        k.net = self.net
        k.spawn = self._spawn_thread
        k.finish_forked = functools.partial(self._finish_forked, k)

        def on_fault(code: int) -> None:
            # Never returns: the guest dies (GuestExit), or the state says where it goes on
            # (a handler's frame was pushed) and kiln_run is entered again there (Redispatch).
            k.enter_host()
            if code == abi.FaultCode.INTERRUPT:
                k.on_interrupt()               # may push handler frames, or end the guest
                raise signals.Redispatch()
            if code == abi.FaultCode.NO_TRANSLATION:
                if k.sync_code():              # another thread mapped code since: look again
                    k.ctl.set("rip", k.ctl.read_fault()[2])
                    raise signals.Redispatch()
                hop = trampoline_jump(k.space, k.ctl.read_fault()[2] & 0xFFFFFFFF)
                if hop is not None:            # a libffi closure: its two instructions' effect
                    k.ctl.set("r10", hop[0])
                    k.ctl.set("rip", hop[1])
                    raise signals.Redispatch()
            e = fault_exit(self.mb.index, k)
            if e.signal in FAULT_SI_CODE:
                addr = k.ctl.read_fault()[2] & 0xFFFFFFFF
                si_code = FAULT_SI_CODE[e.signal]
                if e.signal == hsignal.SIGSEGV and k.space.at(addr) is not None:
                    si_code = 2                 # SEGV_ACCERR: mapped, but not code
                dead = k.fault_to_handler(e.signal, addr, si_code, e.message or "")
                if dead is None:
                    raise signals.Redispatch()
                e = dead
            raise e

        def on_rdtsc() -> int:
            return time.monotonic_ns() & 0x7FFF_FFFF_FFFF_FFFF

        native = gate.GateState() if not self.spec.trace and gate.wanted() else None
        host = host_functions(store, k.on_syscall, on_fault, on_rdtsc, native=native)
        try:
            code = GuestCode(store, self.modules[abi.CORE_MODULE], host, guest)
            k.code = code
            k.unit_module = self.unit_module
            ctl_mem = code.ctl
        except (wasmtime.WasmtimeError, TypeError, KeyError) as e:
            raise VkernelError(f"cannot instantiate the megabinary's modules: {e}",
                               hint="the megabinary was built for another ABI; re-run recompile") from None
        cview, ctl_base = _memory_view(ctl_mem, store)
        if guest is None:
            space = AddressSpace(code.guest.view(), code.guest.base)
            space.limit = self.spec.memory
            space.run_budget = self.spec.run_memory
            k.space = space
        k.ctl = ControlMemory(cview)
        if native is not None:
            k.gate_vfs = gate.vfs_view(k.vfs)    # (kept while the gate may use it)
            k.adopt = gate.adopt
            gate.bind(native, ctl_base, (code.guest.base, code.guest.size), self.proc.fdref,
                      DISPATCH, k.gate_vfs)
        return GuestInstance(store, k, code)

    def _spawn_thread(self, parent: Kernel) -> Kernel:
        """A new thread of ``parent``'s process (clone, vkernel/threads.py): its own store over
        the process's guest memory, the process's code instantiated, the CPU state the
        parent's."""
        k = threads.take_spare(parent)
        if k is None:
            k = self._instance(ThreadState(tid=0, host_main=False), parent.code.guest).kernel
        lo, hi = abi.CPU_STATE, abi.CPU_STATE + abi.CPU_STATE_SIZE
        k.ctl.view[lo:hi] = parent.ctl.view[lo:hi]
        k.sync_code()
        return k

    def _finish_forked(self, k: Kernel, e: BaseException) -> None:
        """The end of a forked child whose only thread was not the parent's first one (it
        forked in a thread): exit like the guest, or exec and run on first. Never returns."""
        self.thread, self.kernel = k.thread, k
        status, sig = 2, 0
        try:
            if isinstance(e, GuestExec):
                status = self._until_exit(self._exec_step(e))
            else:
                status = self._end(k, e)  # type: ignore[arg-type]
            sig = self.last_signal
        except KilnError as err:
            print(f"kiln: {err.message}", file=sys.stderr, flush=True)
            status = 127
        except Exception as err:               # a vkernel bug: said, not a silent status 2
            print(f"kiln: internal error in vkernel (forked process {self.proc.exe}): "
                  f"{type(err).__name__}: {err}", file=sys.stderr, flush=True)
        finally:
            self.close()
            die_like(status, sig)

    def _load(self, inst: "GuestInstance", path: str, data: bytes, unit: UnitInfo,
              interp: Interpreter | None) -> tuple[Any, Any]:
        """Map the program (and its interpreter) into a fresh instance's memory, their code
        reachable by dispatch: the loaded images."""
        space = inst.kernel.space
        image = load_elf(space, data, path, unit.number)
        space.brk_start = space.brk_cur = image.brk_start
        loaded_interp = None if interp is None else \
            load_elf(space, interp.data, interp.path, interp.unit.number, interpreter=True)
        with self.proc.lock:                   # a new program: nothing of the old one runs
            self.proc.code_regions = []
            self.proc.code_generation += 1
        inst.kernel.add_regions([*image.regions,
                                 *(loaded_interp.regions if loaded_interp else ())])
        return image, loaded_interp

    def _file_identity(self, path: str) -> tuple[str, tuple[int, ...]]:
        """(canonical guest path, (dev, inode, size, mtime, ctime)) of a program file."""
        h = self.vfs.open(path, os.O_RDONLY)
        try:
            s = os.fstat(h)
            return self.vfs.guest_path_of(h), (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns,
                                               s.st_ctime_ns)
        finally:
            os.close(h)

    def prepare(self, path: str) -> "PreparedProgram":
        """The program at guest ``path`` loaded, hash-checked and instantiated up to its first
        instruction, without argv: a process that forks from here (a sandbox's first process)
        starts that program in each child without reading, checking or mapping it again, when
        the file the child names is still the same file (device, inode, size, mtime, ctime:
        the stamp rule of vkernel/verified.py). The bytes that run are the ones checked here."""
        canonical, ident = self._file_identity(path)
        h = self.vfs.open(path, os.O_RDONLY)
        try:
            data = os.pread(h, max(os.fstat(h).st_size, 0), 0)
        finally:
            os.close(h)
        unit = self.policy.check_exec(path, data)
        interp = self._interpreter(path, data)
        interp_ident = None if interp is None else self._file_identity(interp.path)[1]
        if self._file_identity(path)[1] != ident:
            raise VkernelError(f"{path} changed while it was being prepared")
        inst = self._instance()
        image, loaded_interp = self._load(inst, canonical, data, unit, interp)
        return PreparedProgram(canonical, ident, None if interp is None else interp.path,
                               interp_ident, inst, image, loaded_interp)

    def _prepared_for(self, path: str) -> "PreparedProgram | None":
        """The prepared program (then forgotten: it is used once) if ``path`` is its file."""
        prep, self.prepared = self.prepared, None
        if prep is None:
            return None
        try:
            canonical, ident = self._file_identity(path)
            if (canonical, ident) != (prep.path, prep.identity):
                return None
            if prep.interp_path is not None and \
                    self._file_identity(prep.interp_path)[1] != prep.interp_identity:
                return None
        except OSError:
            return None
        k = prep.instance.kernel            # what the process has now (its own stdio...)
        self.proc.fds = self.fds            # the kernel's fd table is its process's
        k.vfs, k.proc, k.audit, k.policy = self.vfs, self.proc, self.audit, self.policy
        k.trace = format_call if self.spec.trace else None
        return prep

    def _start(self, path: str, argv: list[bytes], envp: list[bytes], data: bytes | None = None,
               execfn: str | None = None, unit: UnitInfo | None = None,
               interp: Interpreter | None = None, prepared: "PreparedProgram | None" = None) -> int:
        """Load and run one program. ``data`` (with ``path`` canonical), ``unit`` and ``interp``
        come from an execve that already checked everything; without them the file (and its
        interpreter) is opened and its hash checked here (first program), unless ``prepared``
        has it loaded already."""
        canonical = path
        execfn = execfn or path
        if prepared is not None:
            inst, image, loaded_interp = prepared.instance, prepared.image, prepared.interp
            canonical = prepared.path
        else:
            if data is None:
                try:
                    h = self.vfs.open(path, os.O_RDONLY)
                    try:
                        data = os.pread(h, max(os.fstat(h).st_size, 0), 0)
                        canonical = self.vfs.guest_path_of(h)  # /proc/self/exe: symlinks resolved
                    finally:
                        os.close(h)
                except OSError as e:
                    raise VkernelError(f"cannot run {path}: {e.strerror}",
                                       hint="check the path inside the rootfs") from None
            if unit is None:
                unit = self.policy.check_exec(path, data)
                interp = self._interpreter(path, data)
            inst = self._instance()
            image, loaded_interp = self._load(inst, path, data, unit, interp)
        k = inst.kernel
        ids = (os.getuid(), os.geteuid(), os.getgid(), os.getegid())
        rsp = build_stack(k.space, image, argv, envp, execfn, ids, loaded_interp,
                          secure=creds.secure_exec())
        k.ctl.reset_for_entry(image.entry if loaded_interp is None else loaded_interp.entry, rsp)
        self.proc.exe = canonical
        return self._enter(inst, path)

    def _enter(self, inst: "GuestInstance", path: str,
               first: "Callable[[], None] | None" = None) -> int:
        """Run the process's lifted code from the CPU state until the guest exits (its status)
        or execs (GuestExec); ``first`` runs before, with signals attached (a restored
        process's pending syscall, vkernel/checkpoint.py)."""
        store, k, run = inst.store, inst.kernel, inst.code.run
        self.kernel = k
        signals.attach(self.proc, k)
        if signals._wake_r < 0:
            signals.install_wakeup()
        signals.sync_host(self.proc)
        signals.sync_host_mask(k.thread, self.proc)

        def run_from_state() -> None:
            k.run_lifted(run, store)

        signals.on_fatal = self._die_of        # used in a forked process once it carries deaths
        try:
            if first is not None:
                first()
            run_from_state()
        except GuestExit as e:
            return self._end(k, e)
        except KeyboardInterrupt:
            # Ctrl-C reaches the host process: the guest dies of SIGINT, as it would natively.
            return self._end(k, GuestExit(128 + hsignal.SIGINT, hsignal.SIGINT))
        except wasmtime.Trap as e:
            return self._end(k, GuestExit(128 + hsignal.SIGSEGV, hsignal.SIGSEGV,
                                          f"{path}: lifted code trapped: {str(e).splitlines()[0]}"))
        finally:
            signals.attach(self.proc, None)        # the watcher must not touch a freed store
        raise VkernelError(f"{path}: lifted code returned from {abi.EXPORT_RUN} (it must leave "
                           "only through exit, exec or a fault)",
                           hint="this is a recompiler bug; please report it with the megabinary")

    def _end(self, k: Kernel, e: GuestExit) -> int:
        """The process ends with ``e`` in its first thread ``k``: the other threads stopped,
        every robust list walked (a process-shared robust mutex it held: EOWNERDEAD for the
        next locker, as Linux), the status to exit with."""
        if self.proc.multithreaded:
            from vkernel.threads import stop_others
            stop_others(k)
        robust.release(k)
        return self._exit_status(e)

    def _die_of(self, sig: int) -> None:
        """The signal watcher's end of a guest process whose deaths vkernel carries out (the
        first one; a forked one once ``signals.carry_deaths``): a default-action signal
        arrived while lifted code runs without reaching a back-edge poll or a syscall."""
        try:
            if self.kernel is not None:
                self.kernel.trace_killed(sig)
            robust.release_all(self.proc)      # its threads still run: walked from here
            self._exit_status(GuestExit(128 + sig, sig))
            if not self.proc.is_forked_child:
                creds.restore_host()           # tidy up as vkernel itself, as run_guest does
            self.close()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            if self.proc.is_forked_child:
                die_like(128 + sig, sig)       # its parent's wait sees the signal
            os._exit(128 + sig)

    def _exit_status(self, e: GuestExit) -> int:
        gate_report()
        if e.message:
            print(f"kiln: {e.message}", file=sys.stderr, flush=True)
        self.last_signal = e.signal
        if e.signal:
            # Like a shell: no message for SIGINT (the user pressed ^C).
            if not self.proc.is_forked_child and e.signal != hsignal.SIGINT:
                try:
                    text = hsignal.strsignal(e.signal) or f"signal {e.signal}"
                except ValueError:
                    text = f"signal {e.signal}"
                print(text, file=sys.stderr, flush=True)
            return 128 + e.signal
        return e.status

    # -- the top-level loop -------------------------------------------------------------
    def preflight(self) -> None:
        """The errors :meth:`run` would meet before the program loads (no working directory,
        no such command), raised now: a container reports them when it is created."""
        env = [e.encode() for e in self.spec.env]
        if not self.vfs.is_dir(self.proc.cwd):
            raise VkernelError(f"working directory {self.proc.cwd} does not exist in the rootfs",
                               hint="pass an existing directory with --workdir")
        path = self.resolve_command(self.spec.argv[0], env)
        try:
            self.vfs.stat(path)
        except OSError as e:
            raise VkernelError(f"cannot run {path}: {e.strerror}",
                               hint="check the path inside the rootfs") from None

    def run(self) -> int:
        env = [e.encode() for e in self.spec.env]
        if not any(e.startswith(b"PATH=") for e in env):
            env.insert(0, f"PATH={DEFAULT_PATH}".encode())
        if not self.vfs.is_dir(self.proc.cwd):
            raise VkernelError(f"working directory {self.proc.cwd} does not exist in the rootfs",
                               hint="pass an existing directory with --workdir")
        h = self.vfs.open(self.proc.cwd, os.O_PATH | os.O_DIRECTORY)
        try:
            self.proc.cwd = self.vfs.guest_path_of(h)
        finally:
            os.close(h)
        argv = [a.encode() for a in self.spec.argv]
        path = self.resolve_command(self.spec.argv[0], env)
        prepared = self._prepared_for(path)
        return self._until_exit(lambda: self._start(path, argv, env, prepared=prepared))

    def resume(self, inst: "GuestInstance", first: "Callable[[], None]") -> int:
        """Run a process restored into ``inst`` (vkernel/checkpoint.py) as :meth:`run` runs a
        program: from its CPU state, after ``first`` (its pending syscall)."""
        return self._until_exit(lambda: self._enter(inst, self.proc.exe, first))

    def _until_exit(self, step: "Callable[[], int]") -> int:
        """``step`` (a program), then each program it execs, until one exits: its status."""
        while True:
            try:
                return step()
            except GuestExec as ex:
                step = self._exec_step(ex)

    def _exec_step(self, ex: GuestExec) -> "Callable[[], int]":
        """What execve does to the process before the new program runs (other threads ended,
        close-on-exec fds closed, handlers reset, a vfork parent woken); the step that runs it."""
        if self.proc.multithreaded and self.kernel is not None:
            from vkernel.threads import stop_others
            stop_others(self.kernel)           # Linux: execve ends the other threads
        if self.kernel is not None:
            robust.release(self.kernel)        # Linux walks the robust list at exec too
        self.fds.close_on_exec()
        for sig, act in list(self.proc.sigactions.items()):
            if act.handler not in (0, 1):
                self.proc.sigactions[sig] = SignalAction()
        self.thread.exec_reset()
        self.proc.vkernel_deaths = False       # one thread, no robust list: _enter re-mirrors
        if self.proc.vfork_fd >= 0:            # wake a vfork parent: we have exec'd
            os.close(self.proc.vfork_fd)
            self.proc.vfork_fd = -1
        return functools.partial(self._start, ex.path, ex.argv, ex.envp, ex.data,
                                 ex.execfn, ex.unit, ex.interp)  # type: ignore[arg-type]

def die_like(status: int, sig: int) -> None:
    """End a forked child the way its guest ended, so the parent's wait4 sees the same status.
    Any host thread may call it (the signal watcher ends a busy guest): the signal's default
    action is set through libc (Python's signal.signal is the main thread's only) and sent to
    this very thread, unblocked, so no mask elsewhere holds it back."""
    if sig:
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            libc = ctypes.CDLL(None)
            libc.signal.restype = ctypes.c_void_p
            libc.signal(ctypes.c_int(sig), ctypes.c_void_p(0))          # SIG_DFL
            hsignal.pthread_sigmask(hsignal.SIG_UNBLOCK, (sig,))
            hsignal.pthread_kill(threading.get_ident(), sig)
        except OSError:
            pass
    os._exit(status & 0xFF)
