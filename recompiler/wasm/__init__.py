"""IR -> WebAssembly: function emission, module linking, dispatch and the runtime glue.

Design note (code shape of the megabinary module)
-------------------------------------------------

* **Functions.** Each guest function (entry point found by discovery) is one
  wasm function ``(param $entry i32)``. Its body is a ``loop $L`` around a
  ``br_table`` over nested ``block``s, one per basic block: a direct jump to a
  block of the same function is ``local.set $pc; br $L`` (or nothing when it
  is the next block), so any block can be (re)entered, and ``$entry`` lets
  dispatch enter a function at an inner block (return addresses, jump-table
  targets, longjmp targets). Blocks reachable from several functions are
  duplicated into each.
* **Calls and returns.** A guest ``call`` pushes the return address on the
  guest stack (guest memory), spills the registers the function wrote, and
  calls the callee's wasm function directly (indirect calls go through
  ``$dispatch_call``). A guest ``ret`` pops the target into ``state.rip`` and
  returns. After the call the caller compares ``state.rip`` with its expected
  return address: equal -> reload the registers it uses and continue at the
  return block; different (longjmp, stack switching, signal frames) -> return
  to its own caller, and so on up to ``kiln_run``, whose loop dispatches
  ``state.rip``. Jumps to other functions are tail calls (``return_call``);
  indirect jumps are ``return_call $dispatch_jump``.
* **Dispatch.** ``$lookup`` finds the code region containing the runtime
  address (table written by vkernel at ``CODE_REGIONS``), subtracts the bias,
  and binary-searches the unit's sorted entry table (data segment in the
  control memory at ``CONTROL_DYNAMIC``: link address, function table index,
  block index). Miss -> ``fault(NO_TRANSLATION)``. Only translated code runs.
* **Register caching.** Inside a function the guest registers live in wasm
  locals: on entry the function loads the registers it uses from the CPU
  state; it stores the registers it writes at every exit (call, return, tail
  call, syscall, fault). The rule is local to ``emit.FunctionEmitter``
  (``spill``/``reload``), so it can be refined without touching semantics.
* **Flags.** Each flag is an i32 local. Semantics emit deferred flag
  computations (``FlagThunk``); a backward liveness pass over the function's
  blocks expands only the flags some later instruction reads. Flags are
  assumed dead across ``call``/``ret`` and at direct tail calls (SysV ABI),
  live at indirect jumps (materialised into ``state.rflags``).
* **Syscalls and faults** follow formats.abi: registers spilled, frame
  written, import called; ``resume == RELOAD`` makes the function return so
  dispatch restarts at ``state.rip`` with everything reloaded.
* **Deep recursion.** A global counts nested guest calls; past
  ``emit.MAX_CALL_DEPTH`` (200) a call leaves with ``state.rip`` = callee, all
  frames unwind through the return-address check, and ``kiln_run`` restarts
  there, so 100k-deep guest recursion fits Wasmtime's 2 MiB stack.
* **Emission format.** WebAssembly text, assembled by ``wasmtime.wat2wasm``.
  Measured on Debian's busybox-static (373k instructions lifted, 4.5k
  functions, 133k blocks, 129 MB of WAT, 19 MB of wasm), two cores shared
  with other jobs: lift 12-25 s, wat2wasm 9 s, Cranelift compile 19-23 s.
  A binary encoder would remove the wat2wasm step and most of the text
  building. Run time: ``busybox gzip -c`` of 30 MB: native 0.8 s,
  qemu-x86_64 2.3 s, lifted 2.7 s (harness syscalls in Python included).
"""
from __future__ import annotations
