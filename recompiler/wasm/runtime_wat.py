"""Hand-written WebAssembly shared by every megabinary: dispatch, kiln_run, 128-bit arithmetic helpers."""
from __future__ import annotations

from formats.abi import (CODE_REGIONS, CODE_REGIONS_GENERATION, CONTROL_DYNAMIC, CPU_STATE, CPU_STATE_OFFSETS, FAULT_RECORD,
                         FAULT_RECORD_OFFSETS, FaultCode)

__all__ = ["runtime_wat", "ENTRY_SIZE", "DIRECTORY", "UNIT_COUNT", "LOOKUP_CACHE", "LOOKUP_CACHE_SIZE",
           "cache_slot", "cache_hit"]

ENTRY_SIZE = 12
"""Dispatch table entry: (link-time address u32, function table index u32, block index u32)."""

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


LOOKUP_CACHE_ENTRIES = 4096
"""Direct-mapped cache of dispatch lookups (runtime address -> function, block), in the control memory."""
LOOKUP_CACHE_ENTRY = 16
"""Cache entry: runtime address u32, function u32, block u32, and the code-region table's generation
(``formats.abi.CODE_REGIONS_GENERATION``) when it was filled: a hit is used only while the table is
unchanged since, so vkernel remapping code never runs a stale translation."""
LOOKUP_CACHE_SIZE = LOOKUP_CACHE_ENTRIES * LOOKUP_CACHE_ENTRY
LOOKUP_CACHE = CONTROL_DYNAMIC
"""The cache's offset in the control memory: fixed, so each indirect call or jump site can test
it inline (``FunctionEmitter._dispatch``) before it calls ``$lookup``."""
UNIT_COUNT = LOOKUP_CACHE + LOOKUP_CACHE_SIZE
"""u32 number of units; the directory follows 16 bytes on."""
DIRECTORY = UNIT_COUNT + 16
"""Per-unit (table offset u32, entry count u32) pairs; each unit's sorted entry table follows."""


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


def runtime_wat(nunits: int) -> str:
    """The runtime functions (the lookup cache at :data:`LOOKUP_CACHE` starts zeroed)."""
    fr = FAULT_RECORD
    return f"""
 (global $rem (mut i64) (i64.const 0))
 (global $divfault (mut i32) (i32.const 0))
 (global $blk (mut i32) (i32.const 0))
 (global $depth (mut i32) (i32.const 0))
 (func $lookup (param $a i64) (result i32)
  (local $a32 i32) (local $n i32) (local $i i32) (local $e i32) (local $unit i32) (local $link i32)
  (local $lo i32) (local $hi i32) (local $mid i32) (local $tab i32) (local $k i32) (local $p i32) (local $ce i32)
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
  (if (i32.ge_u (local.get $unit) (i32.const {nunits})) (then (return (i32.const -1))))
  (local.set $tab (i32.load $c offset={DIRECTORY} (i32.shl (local.get $unit) (i32.const 3))))
  (local.set $hi (i32.load $c offset={DIRECTORY + 4} (i32.shl (local.get $unit) (i32.const 3))))
  (block $miss
   (loop $bs
    (br_if $miss (i32.ge_u (local.get $lo) (local.get $hi)))
    (local.set $mid (i32.shr_u (i32.add (local.get $lo) (local.get $hi)) (i32.const 1)))
    (local.set $p (i32.add (local.get $tab) (i32.mul (local.get $mid) (i32.const {ENTRY_SIZE}))))
    (local.set $k (i32.load $c (local.get $p)))
    (if (i32.eq (local.get $k) (local.get $link))
     (then
      (global.set $blk (i32.load $c offset=8 (local.get $p)))
      (i32.store $c (local.get $ce) (local.get $a32))
      (i32.store $c offset=4 (local.get $ce) (i32.load $c offset=4 (local.get $p)))
      (i32.store $c offset=8 (local.get $ce) (global.get $blk))
      (i32.store $c offset=12 (local.get $ce) (i32.load $c (i32.const {CODE_REGIONS_GENERATION})))
      (return (i32.load $c offset=4 (local.get $p)))))
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
 (func $kiln_run (export "kiln_run")
  ;; entered with no guest frame below: a fault that unwound the wasm stack left $depth high
  (global.set $depth (i32.const 0))
  (loop $top
   (call $dispatch_call (i64.load $c offset={_RIP} (i32.const 0)))
   (br $top)))
 (func $mulhi_u (param $a i64) (param $b i64) (result i64)
  (local $al i64) (local $ah i64) (local $bl i64) (local $bh i64) (local $ll i64) (local $lh i64) (local $hl i64) (local $mid i64)
  (local.set $al (i64.and (local.get $a) (i64.const 0xffffffff)))
  (local.set $ah (i64.shr_u (local.get $a) (i64.const 32)))
  (local.set $bl (i64.and (local.get $b) (i64.const 0xffffffff)))
  (local.set $bh (i64.shr_u (local.get $b) (i64.const 32)))
  (local.set $ll (i64.mul (local.get $al) (local.get $bl)))
  (local.set $lh (i64.mul (local.get $al) (local.get $bh)))
  (local.set $hl (i64.mul (local.get $ah) (local.get $bl)))
  (local.set $mid (i64.add (i64.add (i64.shr_u (local.get $ll) (i64.const 32))
                                    (i64.and (local.get $lh) (i64.const 0xffffffff)))
                           (i64.and (local.get $hl) (i64.const 0xffffffff))))
  (i64.add (i64.add (i64.mul (local.get $ah) (local.get $bh))
                    (i64.add (i64.shr_u (local.get $lh) (i64.const 32)) (i64.shr_u (local.get $hl) (i64.const 32))))
           (i64.shr_u (local.get $mid) (i64.const 32))))
 (func $mulhi_s (param $a i64) (param $b i64) (result i64)
  (i64.sub (i64.sub (call $mulhi_u (local.get $a) (local.get $b))
                    (select (local.get $b) (i64.const 0) (i64.lt_s (local.get $a) (i64.const 0))))
           (select (local.get $a) (i64.const 0) (i64.lt_s (local.get $b) (i64.const 0)))))
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
""" + _rounding_wat()
