"""IR -> WebAssembly: function emission, module linking, dispatch and the runtime glue.

Design note (code shape of the megabinary module)
-------------------------------------------------

* **Functions.** Each guest function (entry point found by discovery) is one
  wasm function ``(param $entry i32)``; its blocks are laid out in reverse
  postorder (``lift_api._reverse_postorder``), so every jump to an earlier
  block is a loop back edge. Structured control flow (``control.py``): a
  back-edge target ``h`` (except of a jump through ``$hub``, below) heads a wasm ``loop $Lh`` spanning blocks h..M (M: the
  last block jumping back; spans widened until they nest); the code of block
  k follows the ``end`` of ``block $bk``, opened at the top of the innermost
  loop spanning k, so forward jumps are plain ``br $bk`` and back edges
  ``br $Lh``. ``$entry`` (dispatch at an inner block: return addresses,
  jump-table targets, longjmp targets) goes through one ``br_table`` at
  function start; entering a loop anywhere but at its header (from dispatch or
  a forward jump from outside) passes the loop's trampoline ``$th`` (sets
  ``$disp``), and the loop's first instruction then ``br_table``s on ``$pc``.
  Blocks reachable from several functions are duplicated into each.
* **Calls and returns.** A guest ``call`` pushes the return address on the
  guest stack (guest memory), spills the registers the function wrote, and
  calls the callee's wasm function directly (indirect calls go through
  ``$dispatch_call``). A guest ``ret`` pops the target into ``state.rip`` and
  returns. After the call the caller compares ``state.rip`` with its expected
  return address: equal -> reload the registers it uses and continue at the
  return block; different (longjmp, stack switching, signal frames) -> return
  to its own caller, and so on up to ``kiln_run``, whose loop dispatches
  ``state.rip``. Jumps to other functions are tail calls (``return_call``).
  Indirect calls and jumps call ``$lookup`` and then ``call_indirect`` /
  ``return_call_indirect`` at their own site (not through the shared
  ``$dispatch_call``): one host indirect branch per guest site, so the host
  predicts each as the CPU would the guest's. A function's prologue takes entry
  0 (every direct call) with one ``br_if`` before the ``$entry`` jump table.
* **Dispatch.** ``$lookup`` finds the code region containing the runtime
  address (table written by vkernel at ``CODE_REGIONS``), subtracts the bias,
  and binary-searches the unit's sorted entry table (data segment in the
  control memory after the cache: link address, function table index,
  block index), behind a direct-mapped cache of 4096 lookups at
  ``CONTROL_DYNAMIC`` (a hit is used only while the code-region table's
  generation is the one it was filled under). Each indirect site tests the
  cache inline and calls ``$lookup`` on a miss. Miss -> ``fault(NO_TRANSLATION)``.
  Only translated code runs.
* **Addresses.** Run-time addresses in lifted code (rip-relative data, pushed
  return addresses, dispatch and jump-table targets, fault and syscall rip)
  are the IR's ``RtAddr``: the link-time address plus the load bias, a
  constant for units lifted at a fixed address, ``(global.get $U.bias)`` plus
  the link address for position-independent units (shared objects, ld.so,
  dynamic PIE), whose module must define that i64 global. Jump tables then
  compare link-time addresses (``$jl`` = target minus the bias).
* **MMX and x87.** Both live in the CPU state, not in locals: ``mm<i>`` is the
  low 64 bits of x87 physical register ``st<i>``; MMX semantics read and
  write it there and keep the tag word and TOP as the CPU does.
* **Register caching.** Inside a function the guest registers live in wasm
  locals: on entry the function loads the registers it uses from the CPU
  state; at every exit (call, return, tail call, syscall, fault) it stores the
  registers possibly written since it was entered or last reloaded them after
  a call (a forward may-analysis, ``regsets.RegisterSets._dirty_in``): the state
  already holds the others. On entry and after a call it loads only the
  registers some later read needs before writing them (a backward liveness,
  ``_live_in``, where each of those stores counts as a read), so a local may
  be stale only while the state holds the register's value. Each back edge's
  loop header's and each exit's interrupt poll stores its own possibly-written set. The rule is
  local to ``emit.FunctionEmitter`` (``spill``/``reload``, with the analyses
  in ``regsets.py``), so it can be
  refined without touching semantics.
* **Flags.** Each flag is an i32 local. Semantics emit deferred flag
  computations (``FlagThunk``); a backward liveness pass over the function's
  blocks expands only the flags some later instruction reads. Flags are
  assumed dead across ``call``/``ret`` (SysV ABI), live at indirect jumps
  (materialised into ``state.rflags``); a direct jump to another function
  hands over (in ``state.rflags``) the flags that function reads at its
  entry, GCC's cold parts (``x86_64.lift.entry_flag_reads``).
* **Flags at exits.** A fault site or a syscall reads every flag (a signal
  frame and sigreturn see rflags; Linux copies rflags into r11 on syscall).
* **MXCSR.** Rounding control is honoured exactly by the conversions
  (cvtsd2si/cvtss2si, cvtsi2sd/cvtsi2ss from 64 bits, cvtsd2ss: helpers in
  runtime_wat that re-round the round-to-nearest result by one ulp); SSE
  arithmetic always rounds to nearest (wasm has no other mode), exception flags
  are never set and FTZ/DAZ are ignored.
* **Interrupt poll.** The top of every loop header (each iteration, and the
  first entry), every jump through ``$hub`` and every jump out of the function
  (tail calls, dispatch) first loads the u32 at ``formats.abi.INTERRUPT_FLAG``
  (one load, one predictable branch): a cycle of guest code always passes one.
  When it is set, the code stores the registers the state lacks there and
  jumps to the function's one shared exit (``block $intr``): it stores the
  flags live at its loop headers and jump-table targets (the other rflags bits
  keep the state's value), rip = ``$irip`` (the header, the table's target or
  the jump's target: each a dispatch entry), the fault record (``INTERRUPT``),
  resets the call depth (vkernel unwinds the wasm stack and re-enters
  ``kiln_run``) and calls ``fault``. Loop headers are therefore dispatch
  entries (``FunctionEmitter.loop_entries``), and a function whose loop
  headers have live flags loads the flags from the state at entry.
* **Jump tables.** An indirect jump with at most ``control.HUB_TARGETS`` (16)
  known targets in the function is a compare tree branching to each (its
  back edges make loops like any other). One with more turns the address
  into the target's block index with a compare tree that only computes a
  number, then branches to ``$hub``: a ``loop``
  around the function-start ``br_table``, which routes to any block as
  dispatch entry does (through the trampolines of the loops it is in). One
  edge per jump, not one per target: CPython's opcode dispatch (226 jumps of
  256 targets each) had made Cranelift emit 37 MB of register moves for one
  function (now 3.7 MB), and these edges make no loops. In a function with
  ``$hub``, a back edge spanning more than ``control.LOOP_SPAN`` (64) blocks
  also goes through it (polling first) instead of making a loop: loops
  widened to nest had put CPython's opcode blocks 8-13 loops deep, each
  level a trampoline ``br_table`` per opcode dispatch. Each loop's
  ``br_table`` lists only the blocks some jump or entry really routes
  through it.
* **Wide products.** ``mul``/``imul``'s high 64 bits are one
  ``i64.mul_wide_s``/``_u`` (Wasmtime's wide-arithmetic proposal, an
  engine setting), inline: no helper call, so an ``imul`` whose overflow
  flags are dead costs one host multiply (``corpus-mulhash``: 12x -> 2.7x
  native; docs/benchmarks.md).
* **32-bit values.** An ``i64.and`` with 0xffffffff is emitted as
  ``i64.extend_i32_u (i32.wrap_i64 ..)``: Cranelift then uses 32-bit
  instructions, where the AND (not an x86 imm32) would be a memory operand.
* **Syscalls and faults** follow formats.abi: registers spilled, frame
  written, import called; ``resume == RELOAD`` makes the function return so
  dispatch restarts at ``state.rip`` with everything reloaded.
* **Deep recursion.** A global counts nested guest calls; past
  ``emit.MAX_CALL_DEPTH`` (200) a call leaves with ``state.rip`` = callee, all
  frames unwind through the return-address check, and ``kiln_run`` restarts
  there, so 100k-deep guest recursion fits Wasmtime's 2 MiB stack.
* **Emission format.** WebAssembly text per function. ``module.link``
  assembles a skeleton (runtime, tables, data, one stub per guest function,
  so every index is fixed) with ``wasmtime.wat2wasm``, then the guest
  functions in ~4 MB batches in worker processes, each batch against the
  skeleton's stubs, and splices the batches' function bodies into the
  skeleton's code section (byte-identical to assembling the whole text).
  Measured on Debian's busybox-static (~350k instructions, 4.2k functions),
  idle 2-core machine: cold recompile 26.8 s (lift 10.6 s with 2 jobs, link
  3.1-3.6 s, Cranelift 11.2 s), peak RSS ~0.85 GB (``bench/recompile.py``).
"""
from __future__ import annotations
