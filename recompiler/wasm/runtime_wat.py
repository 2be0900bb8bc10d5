"""Hand-written WebAssembly: dispatch (lookup, kiln_run), 128-bit arithmetic and rounding helpers.

The core module (:func:`core_wat`) holds the dispatch loop; every unit module
carries its own copy of the helpers its code calls (:func:`unit_runtime_wat`),
since a call into another instance could not be inlined or kept direct.
"""
from __future__ import annotations

import re

from formats.abi import (CODE_REGIONS, CODE_REGIONS_GENERATION, CPU_STATE, CPU_STATE_OFFSETS,
                         DIRECTORY, DISPATCH_ENTRY_SIZE, FAULT_RECORD, FAULT_RECORD_OFFSETS,
                         LOOKUP_CACHE, LOOKUP_CACHE_ENTRIES, UNIT_COUNT,
                         FaultCode)

__all__ = ["core_wat", "unit_runtime_wat", "cache_slot", "cache_hit"]

_RIP = CPU_STATE + CPU_STATE_OFFSETS["rip"]
_MXCSR = CPU_STATE + CPU_STATE_OFFSETS["mxcsr"]


def _rounding_wat() -> str:
    """MXCSR.RC (bits 13-14: nearest, down, up, toward zero) for the SSE conversions.

    WebAssembly arithmetic rounds to nearest only. Conversions honour RC exactly:
    float->int rounds with nearest/floor/ceil/trunc; int->float and f64->f32 take
    the round-to-nearest result, compare it exactly with the source, and step one
    ulp when the rounding direction asks (overflow to infinity steps back to the
    largest finite value, as the CPU does). Arithmetic (addsd, mulss, ...) still
    rounds to nearest whatever RC says.
    """
    out = [f"""
 (func $mx_rc (result i32)
  (i32.and (i32.shr_u (i32.load $c offset={_MXCSR} (i32.const 0)) (i32.const 13)) (i32.const 3)))"""]
    for ft, it, tiny in (("f32", "i32", "0x1p-149"), ("f64", "i64", "0x0.0000000000001p-1022")):
        out.append(f"""
 (func $rint_{ft} (param $v {ft}) (result {ft})
  (local $rc i32)
  (local.set $rc (call $mx_rc))
  (if (result {ft}) (i32.eqz (local.get $rc)) (then ({ft}.nearest (local.get $v)))
   (else (if (result {ft}) (i32.eq (local.get $rc) (i32.const 1)) (then ({ft}.floor (local.get $v)))
    (else (if (result {ft}) (i32.eq (local.get $rc) (i32.const 2)) (then ({ft}.ceil (local.get $v)))
     (else ({ft}.trunc (local.get $v)))))))))
 (func $step_{ft} (param $r {ft}) (param $up i32) (result {ft})
  (if ({ft}.eq (local.get $r) ({ft}.const 0))
   (then (return (select ({ft}.const {tiny}) ({ft}.const -{tiny}) (local.get $up)))))
  ({ft}.reinterpret_{it} ({it}.add ({it}.reinterpret_{ft} (local.get $r))
   (select ({it}.const 1) ({it}.const -1) (i32.eq (local.get $up) ({ft}.gt (local.get $r) ({ft}.const 0)))))))
 (func $reround_{ft} (param $r {ft}) (param $cmp i32) (result {ft})
  (local $rc i32)
  (if (i32.eqz (local.get $cmp)) (then (return (local.get $r))))
  (local.set $rc (call $mx_rc))
  (if (i32.and (i32.gt_s (local.get $cmp) (i32.const 0))
               (i32.or (i32.eq (local.get $rc) (i32.const 1))
                       (i32.and (i32.eq (local.get $rc) (i32.const 3)) ({ft}.gt (local.get $r) ({ft}.const 0)))))
   (then (return (call $step_{ft} (local.get $r) (i32.const 0)))))
  (if (i32.and (i32.lt_s (local.get $cmp) (i32.const 0))
               (i32.or (i32.eq (local.get $rc) (i32.const 2))
                       (i32.and (i32.eq (local.get $rc) (i32.const 3)) ({ft}.lt (local.get $r) ({ft}.const 0)))))
   (then (return (call $step_{ft} (local.get $r) (i32.const 1)))))
  (local.get $r))
 (func $cvt_i64_{ft} (param $x i64) (result {ft})
  (local $r {ft}) (local $t i64)
  (local.set $r ({ft}.convert_i64_s (local.get $x)))
  (if ({ft}.ge (local.get $r) ({ft}.const 0x1p63))
   (then (return (call $reround_{ft} (local.get $r) (i32.const 1)))))
  (local.set $t (i64.trunc_{ft}_s (local.get $r)))
  (call $reround_{ft} (local.get $r) (i32.sub (i64.gt_s (local.get $t) (local.get $x)) (i64.lt_s (local.get $t) (local.get $x)))))""")
    out.append("""
 (func $demote_rc (param $v f64) (result f32)
  (local $r f32)
  (local.set $r (f32.demote_f64 (local.get $v)))
  (call $reround_f32 (local.get $r) (i32.sub (f64.gt (f64.promote_f32 (local.get $r)) (local.get $v))
                                             (f64.lt (f64.promote_f32 (local.get $r)) (local.get $v)))))""")
    return "".join(out)


def cache_slot(addr32: str) -> str:
    """WAT for the control-memory offset of the cache entry of i32 runtime address ``addr32``."""
    return (f"(i32.add (i32.const {LOOKUP_CACHE}) (i32.shl (i32.and (i32.xor {addr32} (i32.shr_u {addr32} "
            f"(i32.const 12))) (i32.const {LOOKUP_CACHE_ENTRIES - 1})) (i32.const 4)))")


def cache_hit(addr32: str, slot: str) -> str:
    """WAT for the i32 test that cache entry ``slot`` holds non-zero ``addr32`` for the current
    code-region table."""
    return (f"(i32.and (i32.and (i32.eq (i32.load $c {slot}) {addr32}) "
            f"(i32.eq (i32.load $c offset=12 {slot}) (i32.load $c (i32.const {CODE_REGIONS_GENERATION})))) "
            f"(i32.ne {addr32} (i32.const 0)))")


def _dispatch_wat() -> str:
    """``$lookup`` (runtime address -> dispatch-table slot, block in ``$blk``, or -1),
    ``$no_translation``, ``$dispatch_call``, ``$dispatch_jump`` and ``$kiln_run``: the same text
    in the core and in each unit (each instance has its own ``$blk``)."""
    fr = FAULT_RECORD
    return f"""
 (func $lookup (param $a i64) (result i32)
  (local $a32 i32) (local $n i32) (local $i i32) (local $e i32) (local $unit i32) (local $link i32)
  (local $lo i32) (local $hi i32) (local $mid i32) (local $tab i32) (local $k i32) (local $p i32) (local $ce i32)
  (local $row i32) (local $base i32) (local $f i32)
  (if (i64.gt_u (local.get $a) (i64.const 0xffffffff)) (then (return (i32.const -1))))
  (local.set $a32 (i32.wrap_i64 (local.get $a)))
  (local.set $ce {cache_slot("(local.get $a32)")})
  (if {cache_hit("(local.get $a32)", "(local.get $ce)")}
   (then
    (global.set $blk (i32.load $c offset=8 (local.get $ce)))
    (return (i32.load $c offset=4 (local.get $ce)))))
  (local.set $n (i32.load $c (i32.const {CODE_REGIONS})))
  (local.set $unit (i32.const -1))
  (block $found
   (loop $scan
    (br_if $found (i32.ge_u (local.get $i) (local.get $n)))
    (local.set $e (i32.add (i32.const {CODE_REGIONS + 16}) (i32.shl (local.get $i) (i32.const 4))))
    (if (i32.and (i32.ge_u (local.get $a32) (i32.load $c (local.get $e)))
                 (i32.lt_u (local.get $a32) (i32.load $c offset=4 (local.get $e))))
     (then
      (local.set $unit (i32.load $c offset=8 (local.get $e)))
      (local.set $link (i32.sub (local.get $a32) (i32.load $c offset=12 (local.get $e))))
      (br $found)))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br $scan)))
  (if (i32.ge_u (local.get $unit) (i32.load $c (i32.const {UNIT_COUNT}))) (then (return (i32.const -1))))
  (local.set $row (i32.add (i32.const {DIRECTORY}) (i32.shl (local.get $unit) (i32.const 4))))
  (local.set $tab (i32.load $c (local.get $row)))
  (local.set $hi (i32.load $c offset=4 (local.get $row)))
  (local.set $base (i32.load $c offset=8 (local.get $row)))
  (block $miss
   (loop $bs
    (br_if $miss (i32.ge_u (local.get $lo) (local.get $hi)))
    (local.set $mid (i32.shr_u (i32.add (local.get $lo) (local.get $hi)) (i32.const 1)))
    (local.set $p (i32.add (local.get $tab) (i32.mul (local.get $mid) (i32.const {DISPATCH_ENTRY_SIZE}))))
    (local.set $k (i32.load $c (local.get $p)))
    (if (i32.eq (local.get $k) (local.get $link))
     (then
      (global.set $blk (i32.load $c offset=8 (local.get $p)))
      (local.set $f (i32.add (local.get $base) (i32.load $c offset=4 (local.get $p))))
      (i32.store $c (local.get $ce) (local.get $a32))
      (i32.store $c offset=4 (local.get $ce) (local.get $f))
      (i32.store $c offset=8 (local.get $ce) (global.get $blk))
      (i32.store $c offset=12 (local.get $ce) (i32.load $c (i32.const {CODE_REGIONS_GENERATION})))
      (return (local.get $f))))
    (if (i32.lt_u (local.get $k) (local.get $link))
     (then (local.set $lo (i32.add (local.get $mid) (i32.const 1))))
     (else (local.set $hi (local.get $mid))))
    (br $bs)))
  (i32.const -1))
 (func $no_translation (param $a i64)
  (i64.store $c offset={_RIP} (i32.const 0) (local.get $a))
  (i32.store $c offset={fr + FAULT_RECORD_OFFSETS['code']} (i32.const 0) (i32.const {int(FaultCode.NO_TRANSLATION)}))
  (i32.store $c offset={fr + FAULT_RECORD_OFFSETS['detail']} (i32.const 0) (i32.const 0))
  (i64.store $c offset={fr + FAULT_RECORD_OFFSETS['rip']} (i32.const 0) (local.get $a))
  (call $fault (i32.const {int(FaultCode.NO_TRANSLATION)}))
  unreachable)
 (func $dispatch_call (param $a i64)
  (local $f i32)
  (local.set $f (call $lookup (local.get $a)))
  (if (i32.lt_s (local.get $f) (i32.const 0)) (then (call $no_translation (local.get $a))))
  (call_indirect $ft (type $guestfn) (global.get $blk) (local.get $f)))
 (func $dispatch_jump (param $a i64)
  (local $f i32)
  (local.set $f (call $lookup (local.get $a)))
  (if (i32.lt_s (local.get $f) (i32.const 0)) (then (call $no_translation (local.get $a))))
  (return_call_indirect $ft (type $guestfn) (global.get $blk) (local.get $f)))
 (func $kiln_run
  ;; entered with no guest frame below: a fault that unwound the wasm stack left $depth high
  (global.set $depth (i32.const 0))
  (loop $top
   (call $dispatch_call (i64.load $c offset={_RIP} (i32.const 0)))
   (br $top)))"""


_HELPERS = """
 (func $mulhi_u (param $a i64) (param $b i64) (result i64) (local $h i64)
  (i64.mul_wide_u (local.get $a) (local.get $b)) (local.set $h) (drop) (local.get $h))
 (func $udiv128 (param $hi i64) (param $lo i64) (param $d i64) (result i64)
  (local $r i64) (local $q i64) (local $i i32) (local $carry i32)
  (if (i64.eqz (local.get $hi)) (then
    (global.set $rem (i64.rem_u (local.get $lo) (local.get $d)))
    (return (i64.div_u (local.get $lo) (local.get $d)))))
  (local.set $r (local.get $hi))
  (local.set $i (i32.const 64))
  (loop $l
   (local.set $i (i32.sub (local.get $i) (i32.const 1)))
   (local.set $carry (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 63))))
   (local.set $r (i64.or (i64.shl (local.get $r) (i64.const 1))
                         (i64.and (i64.shr_u (local.get $lo) (i64.extend_i32_u (local.get $i))) (i64.const 1))))
   (local.set $q (i64.shl (local.get $q) (i64.const 1)))
   (if (i32.or (local.get $carry) (i64.ge_u (local.get $r) (local.get $d))) (then
     (local.set $r (i64.sub (local.get $r) (local.get $d)))
     (local.set $q (i64.or (local.get $q) (i64.const 1)))))
   (br_if $l (local.get $i)))
  (global.set $rem (local.get $r))
  (local.get $q))
 (func $sdiv128 (param $hi i64) (param $lo i64) (param $d i64) (result i64)
  (local $nn i32) (local $nd i32) (local $ad i64) (local $q i64) (local $r i64)
  (global.set $divfault (i32.const 0))
  (local.set $nn (i64.lt_s (local.get $hi) (i64.const 0)))
  (if (local.get $nn) (then
    (local.set $hi (i64.add (i64.xor (local.get $hi) (i64.const -1)) (i64.extend_i32_u (i64.eqz (local.get $lo)))))
    (local.set $lo (i64.sub (i64.const 0) (local.get $lo)))))
  (local.set $nd (i64.lt_s (local.get $d) (i64.const 0)))
  (local.set $ad (select (i64.sub (i64.const 0) (local.get $d)) (local.get $d) (local.get $nd)))
  (if (i32.or (i64.eqz (local.get $ad)) (i64.ge_u (local.get $hi) (local.get $ad))) (then
    (global.set $divfault (i32.const 1)) (return (i64.const 0))))
  (local.set $q (call $udiv128 (local.get $hi) (local.get $lo) (local.get $ad)))
  (local.set $r (global.get $rem))
  (if (i32.xor (local.get $nn) (local.get $nd))
   (then
    (if (i64.gt_u (local.get $q) (i64.const 0x8000000000000000)) (then (global.set $divfault (i32.const 1))))
    (local.set $q (i64.sub (i64.const 0) (local.get $q))))
   (else
    (if (i64.ge_u (local.get $q) (i64.const 0x8000000000000000)) (then (global.set $divfault (i32.const 1))))))
  (global.set $rem (select (i64.sub (i64.const 0) (local.get $r)) (local.get $r) (local.get $nn)))
  (local.get $q))
 (func $bswap64 (param $v i64) (result i64)
  (local $r i64) (local $i i32)
  (loop $l
   (local.set $r (i64.or (i64.shl (local.get $r) (i64.const 8)) (i64.and (local.get $v) (i64.const 0xff))))
   (local.set $v (i64.shr_u (local.get $v) (i64.const 8)))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br_if $l (i32.lt_u (local.get $i) (i32.const 8))))
  (local.get $r))
"""

GLOBALS = """
 (global $rem (mut i64) (i64.const 0))
 (global $divfault (mut i32) (i32.const 0))
 (global $blk (mut i32) (i32.const 0))"""
"""Each instance's own scratch globals (the call depth is the core's, shared)."""


def core_wat() -> str:
    """The core module's functions and globals: dispatch and ``kiln_run`` (exported by the
    module text around it, with the memories, the table and ``$depth``)."""
    return GLOBALS + _dispatch_wat().replace("(func $kiln_run", '(func $kiln_run (export "kiln_run")')


_FUNC = re.compile(r"\n \(func \$([\w.]+)")
_CALL = re.compile(r"call \$([\w.]+)")


def _functions(text: str) -> dict[str, str]:
    """Each top-level ``(func $name ...)`` of ``text`` by name (bracket matched)."""
    out: dict[str, str] = {}
    for m in _FUNC.finditer(text):
        depth, i = 0, m.start() + 2
        start = i
        while True:
            c = text[i]
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    break
            elif c == ";" and text.startswith(";;", i):
                i = text.index("\n", i) - 1
            i += 1
        out[m.group(1)] = text[start:i + 1]
    return out


_ALL: dict[str, str] | None = None
_X87_GLOBALS = ""


def unit_runtime_wat(called: set[str]) -> str:
    """The helpers a unit needs: those its code calls (``called``), with what they call in
    turn; plus the scratch globals. Dispatch is always there (indirect sites and kiln_run)."""
    global _ALL, _X87_GLOBALS
    if _ALL is None:
        from .x87_wat import x87_runtime_wat
        x87 = x87_runtime_wat()
        _X87_GLOBALS = "".join(re.findall(r"\n \(global [^\n]*", x87))
        _ALL = _functions(_dispatch_wat() + _HELPERS + _rounding_wat() + x87)
    want = {"lookup", "no_translation", "dispatch_call", "dispatch_jump", "kiln_run"}
    want |= {n for n in called if n in _ALL}
    todo = list(want)
    while todo:
        for n in _CALL.findall(_ALL[todo.pop()]):
            if n in _ALL and n not in want:
                want.add(n)
                todo.append(n)
    return GLOBALS + _X87_GLOBALS + "\n" + "\n".join(" " + _ALL[n] for n in _ALL if n in want)
