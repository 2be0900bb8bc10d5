"""Hand-written WebAssembly for the x87 FPU: 80-bit soft float (add, mul, div, sqrt, conversions) and stack state.

An extended value travels as a significand ``m`` (i64, bit 63 the explicit
integer bit) and ``se`` (i32: sign in bit 15, biased exponent in bits 0-14).
A helper returns ``m`` and leaves ``se`` in the global ``$x87_se``. Every
result is rounded by ``$x87_rnd`` as the CPU does: to 64, 53 or 24 bits
(control word PC), with the control word's rounding mode, to extended range
with denormals; it sets PE/OE/UE and C1 (rounded up) in the status word.

The x87 state lives in the CPU-state record of the control memory
(``formats.abi``: fpu_cw, fpu_sw, fpu_tag (abridged, bit = physical register
valid), fpu_top, st0..st7 physical). ``st(i)`` is physical ``(top + i) & 7``.
The status word's TOP bits (11-13) are kept 0 in ``fpu_sw``; fnstsw merges
``fpu_top`` in. The semantics in ``recompiler/x86_64/sem/x87.py`` call these
functions; they need ``$mulhi_u``, ``$udiv128`` and ``$rem`` from
``runtime_wat``.
"""
from __future__ import annotations

from formats.abi import CPU_STATE, CPU_STATE_OFFSETS

__all__ = ["x87_runtime_wat", "OP_ADD", "OP_SUB", "OP_MUL", "OP_DIV", "CONSTANTS"]

OP_ADD, OP_SUB, OP_MUL, OP_DIV = 0, 1, 2, 3
"""Operation codes of ``$x87_op``."""

CONSTANTS = ("one", "zero", "pi", "l2e", "ln2", "l2t", "lg2")
"""Index of each constant for ``$x87_ldconst`` (fld1, fldz, fldpi, fldl2e, fldln2, fldl2t, fldlg2)."""

# (biased exponent, significand truncated to 64 bits, the dropped bits: 0 none, 1 below half, 2 above half)
_CONST = (
    (0x3FFF, 0x8000000000000000, 0),
    (0x0000, 0x0000000000000000, 0),
    (0x4000, 0xC90FDAA22168C234, 2),    # pi      = C90FDAA22168C234 C4C6...
    (0x3FFF, 0xB8AA3B295C17F0BB, 2),    # log2 e  = B8AA3B295C17F0BB BE87...
    (0x3FFE, 0xB17217F7D1CF79AB, 2),    # ln 2    = B17217F7D1CF79AB C9E3...
    (0x4000, 0xD49A784BCD1B8AFE, 1),    # log2 10 = D49A784BCD1B8AFE 492B...
    (0x3FFD, 0x9A209A84FBCFF798, 2),    # log10 2 = 9A209A84FBCFF798 8F89...
)

_CW = CPU_STATE + CPU_STATE_OFFSETS["fpu_cw"]
_SW = CPU_STATE + CPU_STATE_OFFSETS["fpu_sw"]
_TAG = CPU_STATE + CPU_STATE_OFFSETS["fpu_tag"]
_TOP = CPU_STATE + CPU_STATE_OFFSETS["fpu_top"]
_ST0 = CPU_STATE + CPU_STATE_OFFSETS["st0"]

# status word bits
IE, DE, ZE, OE, UE, PE = 1, 2, 4, 8, 16, 32
C0, C1, C2, C3 = 0x100, 0x200, 0x400, 0x4000
_DEFAULT_NAN_M = -0x4000000000000000      # 0xC000000000000000 as signed i64
_INT_BIT = -0x8000000000000000


def _i64(v: int) -> str:
    v &= (1 << 64) - 1
    return str(v - (1 << 64) if v >> 63 else v)


def _consts_wat() -> str:
    """fld1 ... fldlg2: the constant rounded with the control word's mode (as the CPU does)."""
    out = []
    for k, (e, m, extra) in enumerate(_CONST):
        near = m + 1 if extra == 2 else m
        up = m + 1 if extra else m
        out.append(f"""   (if (i32.eq (local.get $k) (i32.const {k})) (then
     (local.set $se (i32.const {e}))
     (local.set $m (select (i64.const {_i64(m)}) (select (i64.const {_i64(up)}) (i64.const {_i64(near)}) (i32.eq (local.get $rc) (i32.const 2)))
                           (i32.or (i32.eq (local.get $rc) (i32.const 1)) (i32.eq (local.get $rc) (i32.const 3)))))))""")
    return "\n".join(out)


def x87_runtime_wat() -> str:
    """The x87 helper functions and globals, to be placed in the megabinary module."""
    return f"""
 (global $x87_se (mut i32) (i32.const 0))
 (global $x87_lo (mut i64) (i64.const 0))
 (global $x87_f (mut i32) (i32.const 0))
 (global $x87_e (mut i32) (i32.const 0))
 (global $x87_up (mut i32) (i32.const 0))
 (global $x87_inx (mut i32) (i32.const 0))
 ;; ---- state access ----------------------------------------------------------------
 (func $x87_top (result i32) (i32.and (i32.load16_u $c (i32.const {_TOP})) (i32.const 7)))
 (func $x87_phys (param $i i32) (result i32) (i32.and (i32.add (call $x87_top) (local.get $i)) (i32.const 7)))
 (func $x87_slot (param $i i32) (result i32)
  (i32.add (i32.const {_ST0}) (i32.shl (call $x87_phys (local.get $i)) (i32.const 4))))
 (func $x87_m (param $i i32) (result i64) (i64.load $c (call $x87_slot (local.get $i))))
 (func $x87_sei (param $i i32) (result i32) (i32.load16_u $c offset=8 (call $x87_slot (local.get $i))))
 (func $x87_put (param $i i32) (param $m i64) (param $se i32)
  (local $p i32)
  (local.set $p (call $x87_slot (local.get $i)))
  (i64.store $c (local.get $p) (local.get $m))
  (i64.store $c offset=8 (local.get $p) (i64.extend_i32_u (i32.and (local.get $se) (i32.const 0xffff))))
  (i32.store16 $c (i32.const {_TAG}) (i32.or (i32.load16_u $c (i32.const {_TAG}))
                                          (i32.shl (i32.const 1) (call $x87_phys (local.get $i))))))
 (func $x87_push (param $m i64) (param $se i32)
  (i32.store16 $c (i32.const {_TOP}) (i32.and (i32.sub (call $x87_top) (i32.const 1)) (i32.const 7)))
  (call $x87_put (i32.const 0) (local.get $m) (local.get $se)))
 (func $x87_pop
  (i32.store16 $c (i32.const {_TAG}) (i32.and (i32.load16_u $c (i32.const {_TAG}))
                                           (i32.xor (i32.shl (i32.const 1) (call $x87_top)) (i32.const -1))))
  (i32.store16 $c (i32.const {_TOP}) (i32.and (i32.add (call $x87_top) (i32.const 1)) (i32.const 7))))
 (func $x87_incstp (i32.store16 $c (i32.const {_TOP}) (i32.and (i32.add (call $x87_top) (i32.const 1)) (i32.const 7)))
  (call $x87_c1 (i32.const 0)))
 (func $x87_decstp (i32.store16 $c (i32.const {_TOP}) (i32.and (i32.sub (call $x87_top) (i32.const 1)) (i32.const 7)))
  (call $x87_c1 (i32.const 0)))
 (func $x87_ffree (param $i i32)
  (i32.store16 $c (i32.const {_TAG}) (i32.and (i32.load16_u $c (i32.const {_TAG}))
                                           (i32.xor (i32.shl (i32.const 1) (call $x87_phys (local.get $i))) (i32.const -1)))))
 (func $x87_flag (param $b i32)
  (i32.store16 $c (i32.const {_SW}) (i32.or (i32.load16_u $c (i32.const {_SW})) (local.get $b))))
 (func $x87_c1 (param $v i32)
  (i32.store16 $c (i32.const {_SW}) (i32.or (i32.and (i32.load16_u $c (i32.const {_SW})) (i32.const {0xFFFF ^ C1}))
                                         (i32.shl (local.get $v) (i32.const 9)))))
 (func $x87_setcc (param $r i32)
  ;; compare result 0 greater, 1 less, 2 equal, 3 unordered -> C3 C2 C0 (C1 cleared)
  (i32.store16 $c (i32.const {_SW}) (i32.or (i32.and (i32.load16_u $c (i32.const {_SW})) (i32.const {0xFFFF ^ (C0 | C1 | C2 | C3)}))
   (select (i32.const {C3 | C2 | C0}) (select (i32.const {C3}) (select (i32.const {C0}) (i32.const 0)
     (i32.eq (local.get $r) (i32.const 1))) (i32.eq (local.get $r) (i32.const 2))) (i32.eq (local.get $r) (i32.const 3))))))
 (func $x87_sw (result i64)
  (i64.extend_i32_u (i32.or (i32.and (i32.load16_u $c (i32.const {_SW})) (i32.const 0xc7ff))
                            (i32.shl (call $x87_top) (i32.const 11)))))
 (func $x87_rc (result i32) (i32.and (i32.shr_u (i32.load16_u $c (i32.const {_CW})) (i32.const 10)) (i32.const 3)))
 (func $x87_copy (param $d i32) (param $s i32)
  (call $x87_put (local.get $d) (call $x87_m (local.get $s)) (call $x87_sei (local.get $s))))
 (func $x87_fld_st (param $i i32)
  (local $m i64) (local $se i32)
  (local.set $m (call $x87_m (local.get $i)))
  (local.set $se (call $x87_sei (local.get $i)))
  (call $x87_push (local.get $m) (local.get $se))
  (call $x87_c1 (i32.const 0)))
 (func $x87_fxch (param $i i32)
  (local $m i64) (local $se i32) (local $t0 i32) (local $ti i32) (local $tag i32) (local $p0 i32) (local $pi i32)
  (local.set $p0 (call $x87_phys (i32.const 0)))
  (local.set $pi (call $x87_phys (local.get $i)))
  (local.set $tag (i32.load16_u $c (i32.const {_TAG})))
  (local.set $t0 (i32.and (i32.shr_u (local.get $tag) (local.get $p0)) (i32.const 1)))
  (local.set $ti (i32.and (i32.shr_u (local.get $tag) (local.get $pi)) (i32.const 1)))
  (local.set $m (call $x87_m (i32.const 0)))
  (local.set $se (call $x87_sei (i32.const 0)))
  (call $x87_copy (i32.const 0) (local.get $i))
  (call $x87_put (local.get $i) (local.get $m) (local.get $se))
  (local.set $tag (i32.and (i32.load16_u $c (i32.const {_TAG}))
     (i32.xor (i32.or (i32.shl (i32.const 1) (local.get $p0)) (i32.shl (i32.const 1) (local.get $pi))) (i32.const -1))))
  (i32.store16 $c (i32.const {_TAG}) (i32.or (local.get $tag)
     (i32.or (i32.shl (local.get $ti) (local.get $p0)) (i32.shl (local.get $t0) (local.get $pi)))))
  (call $x87_c1 (i32.const 0)))
 (func $x87_ldconst (param $k i32)
  (local $rc i32) (local $m i64) (local $se i32)
  (local.set $rc (call $x87_rc))
{_consts_wat()}
  (call $x87_push (local.get $m) (local.get $se))
  (call $x87_c1 (i32.const 0)))
 (func $x87_fchs
  (call $x87_put (i32.const 0) (call $x87_m (i32.const 0)) (i32.xor (call $x87_sei (i32.const 0)) (i32.const 0x8000)))
  (call $x87_c1 (i32.const 0)))
 (func $x87_fabs
  (call $x87_put (i32.const 0) (call $x87_m (i32.const 0)) (i32.and (call $x87_sei (i32.const 0)) (i32.const 0x7fff)))
  (call $x87_c1 (i32.const 0)))
 (func $x87_fldcw (param $v i32)
  (i32.store16 $c (i32.const {_CW}) (i32.or (i32.and (local.get $v) (i32.const 0x1f3f)) (i32.const 0x40))))
 (func $x87_fnclex
  (i32.store16 $c (i32.const {_SW}) (i32.and (i32.load16_u $c (i32.const {_SW})) (i32.const 0x7f00))))
 (func $x87_fninit
  (i32.store16 $c (i32.const {_CW}) (i32.const 0x37f))
  (i32.store16 $c (i32.const {_SW}) (i32.const 0))
  (i32.store16 $c (i32.const {_TAG}) (i32.const 0))
  (i32.store16 $c (i32.const {_TOP}) (i32.const 0)))
 ;; ---- classification ------------------------------------------------------------------
 ;; 0 zero, 1 finite nonzero, 2 infinity, 3 quiet NaN, 4 signalling NaN, 5 unsupported encoding
 (func $x87_cls (param $m i64) (param $se i32) (result i32)
  (local $e i32)
  (local.set $e (i32.and (local.get $se) (i32.const 0x7fff)))
  (if (i32.eqz (local.get $e)) (then (return (select (i32.const 0) (i32.const 1) (i64.eqz (local.get $m))))))
  (if (i64.ge_s (local.get $m) (i64.const 0)) (then (return (i32.const 5))))
  (if (i32.lt_u (local.get $e) (i32.const 0x7fff)) (then (return (i32.const 1))))
  (if (i64.eqz (i64.shl (local.get $m) (i64.const 1))) (then (return (i32.const 2))))
  (select (i32.const 3) (i32.const 4) (i64.lt_s (i64.shl (local.get $m) (i64.const 1)) (i64.const 0))))
 ;; normalized significand of a finite value; $x87_e = its biased exponent (may be < 1); DE for denormals
 (func $x87_norm (param $m i64) (param $se i32) (result i64)
  (if (i32.and (i32.eqz (i32.and (local.get $se) (i32.const 0x7fff))) (i64.ne (local.get $m) (i64.const 0)))
   (then (call $x87_flag (i32.const {DE}))))
  (call $x87_norm_q (local.get $m) (local.get $se)))
 ;; as $x87_norm without DE (stores to memory do not raise it)
 (func $x87_norm_q (param $m i64) (param $se i32) (result i64)
  (local $e i32) (local $n i32)
  (local.set $e (i32.and (local.get $se) (i32.const 0x7fff)))
  (if (i32.eqz (local.get $e)) (then
    (if (i64.eqz (local.get $m)) (then (global.set $x87_e (i32.const 0)) (return (i64.const 0))))
    (local.set $e (i32.const 1))))
  (local.set $n (i32.wrap_i64 (i64.clz (local.get $m))))
  (global.set $x87_e (i32.sub (local.get $e) (local.get $n)))
  (i64.shl (local.get $m) (i64.extend_i32_u (local.get $n))))
 ;; (hi, lo) >> n with everything shifted out of lo folded into its bit 0; new lo in $x87_lo
 (func $x87_shr128 (param $hi i64) (param $lo i64) (param $n i32) (result i64)
  (local $s i64)
  (if (i32.eqz (local.get $n)) (then (global.set $x87_lo (local.get $lo)) (return (local.get $hi))))
  (if (i32.ge_u (local.get $n) (i32.const 128)) (then
    (global.set $x87_lo (i64.extend_i32_u (i64.ne (i64.or (local.get $hi) (local.get $lo)) (i64.const 0))))
    (return (i64.const 0))))
  (local.set $s (i64.extend_i32_u (local.get $n)))
  (if (i32.ge_u (local.get $n) (i32.const 64)) (then
    (global.set $x87_lo (i64.or (i64.shr_u (local.get $hi) (i64.sub (local.get $s) (i64.const 64)))
      (i64.extend_i32_u (i64.ne (i64.or (local.get $lo)
        (select (i64.const 0) (i64.shl (local.get $hi) (i64.sub (i64.const 128) (local.get $s)))
                (i32.eq (local.get $n) (i32.const 64)))) (i64.const 0)))))
    (return (i64.const 0))))
  (global.set $x87_lo (i64.or (i64.or (i64.shl (local.get $hi) (i64.sub (i64.const 64) (local.get $s)))
                                      (i64.shr_u (local.get $lo) (local.get $s)))
                              (i64.extend_i32_u (i64.ne (i64.shl (local.get $lo) (i64.sub (i64.const 64) (local.get $s))) (i64.const 0)))))
  (i64.shr_u (local.get $hi) (local.get $s)))
 ;; ---- rounding ------------------------------------------------------------------------------
 ;; Round sign * hi.lo * 2^(e - bias) (hi bit 63 = integer bit, or hi = lo = 0) to $keep bits and an
 ;; exponent field below $emax (IEEE-style: field 0 = denormal). Returns the significand with the
 ;; dropped bits zero (bit 63 = integer bit); the exponent field goes to $x87_f.
 (func $x87_rnd (param $sign i32) (param $e i32) (param $hi i64) (param $lo i64) (param $keep i32) (param $emax i32) (result i64)
  (local $rc i32) (local $unit i64) (local $mask i64) (local $rem i64) (local $half i64) (local $extra i32)
  (local $up i32) (local $inx i32) (local $tiny i32) (local $gt i32) (local $eq i32)
  (global.set $x87_up (i32.const 0))
  (global.set $x87_inx (i32.const 0))
  (if (i64.eqz (i64.or (local.get $hi) (local.get $lo))) (then (global.set $x87_f (i32.const 0)) (return (i64.const 0))))
  (local.set $rc (call $x87_rc))
  (if (i32.le_s (local.get $e) (i32.const 0)) (then
    (local.set $tiny (i32.const 1))
    (local.set $hi (call $x87_shr128 (local.get $hi) (local.get $lo)
                     (select (i32.sub (i32.const 1) (local.get $e)) (i32.const 200) (i32.gt_s (local.get $e) (i32.const -200)))))
    (local.set $lo (global.get $x87_lo))
    (local.set $e (i32.const 0))))
  (if (i32.ge_u (local.get $keep) (i32.const 64))
   (then
    (local.set $unit (i64.const 1))
    (local.set $rem (local.get $lo))
    (local.set $half (i64.const {_INT_BIT}))
    (local.set $extra (i32.const 0)))
   (else
    (local.set $unit (i64.shl (i64.const 1) (i64.extend_i32_u (i32.sub (i32.const 64) (local.get $keep)))))
    (local.set $mask (i64.sub (local.get $unit) (i64.const 1)))
    (local.set $rem (i64.and (local.get $hi) (local.get $mask)))
    (local.set $hi (i64.and (local.get $hi) (i64.xor (local.get $mask) (i64.const -1))))
    (local.set $half (i64.shr_u (local.get $unit) (i64.const 1)))
    (local.set $extra (i64.ne (local.get $lo) (i64.const 0)))))
  (local.set $inx (i32.or (i64.ne (local.get $rem) (i64.const 0)) (local.get $extra)))
  (local.set $gt (i32.or (i64.gt_u (local.get $rem) (local.get $half))
                         (i32.and (i64.eq (local.get $rem) (local.get $half)) (local.get $extra))))
  (local.set $eq (i32.and (i64.eq (local.get $rem) (local.get $half)) (i32.eqz (local.get $extra))))
  (local.set $up
   (if (result i32) (i32.eqz (local.get $rc))
    (then (i32.or (local.get $gt) (i32.and (local.get $eq) (i64.ne (i64.and (local.get $hi) (local.get $unit)) (i64.const 0)))))
    (else (if (result i32) (i32.eq (local.get $rc) (i32.const 1))
     (then (i32.and (local.get $inx) (local.get $sign)))
     (else (if (result i32) (i32.eq (local.get $rc) (i32.const 2))
      (then (i32.and (local.get $inx) (i32.eqz (local.get $sign))))
      (else (i32.const 0))))))))
  (if (local.get $up) (then
    (local.set $hi (i64.add (local.get $hi) (local.get $unit)))
    (if (i64.eqz (local.get $hi)) (then
      (local.set $hi (i64.const {_INT_BIT}))
      (local.set $e (i32.add (local.get $e) (i32.const 1)))))))
  (if (local.get $tiny)
   (then
    (local.set $e (i32.wrap_i64 (i64.shr_u (local.get $hi) (i64.const 63))))
    (if (local.get $inx) (then (call $x87_flag (i32.const {UE})))))
   (else
    (if (i32.ge_s (local.get $e) (local.get $emax)) (then
      (call $x87_flag (i32.const {OE | PE}))
      (local.set $inx (i32.const 1))
      (if (i32.or (i32.eqz (local.get $rc)) (i32.eq (local.get $rc) (i32.add (i32.const 1) (i32.eqz (local.get $sign)))))
       (then (local.set $e (local.get $emax)) (local.set $hi (i64.const {_INT_BIT})) (local.set $up (i32.const 1)))
       (else (local.set $e (i32.sub (local.get $emax) (i32.const 1)))
             (local.set $hi (i64.xor (i64.sub (local.get $unit) (i64.const 1)) (i64.const -1)))
             (local.set $up (i32.const 0))))))))
  (if (local.get $inx) (then (call $x87_flag (i32.const {PE}))))
  (global.set $x87_up (local.get $up))
  (global.set $x87_inx (local.get $inx))
  (global.set $x87_f (local.get $e))
  (local.get $hi))
 ;; round to the control word's precision and extended range; sets C1; $x87_se = result sign/exponent
 (func $x87_pack (param $sign i32) (param $e i32) (param $hi i64) (param $lo i64) (result i64)
  (local $pc i32)
  (local.set $pc (i32.and (i32.shr_u (i32.load16_u $c (i32.const {_CW})) (i32.const 8)) (i32.const 3)))
  (call $x87_packp (local.get $sign) (local.get $e) (local.get $hi) (local.get $lo)
    (select (i32.const 24) (select (i32.const 53) (i32.const 64) (i32.eq (local.get $pc) (i32.const 2))) (i32.eqz (local.get $pc)))))
 ;; as $x87_pack with $keep bits of precision (fprem and fscale ignore the precision control)
 (func $x87_packp (param $sign i32) (param $e i32) (param $hi i64) (param $lo i64) (param $keep i32) (result i64)
  (local $m i64)
  (local.set $m (call $x87_rnd (local.get $sign) (local.get $e) (local.get $hi) (local.get $lo) (local.get $keep)
    (i32.const 0x7fff)))
  (global.set $x87_se (i32.or (i32.shl (local.get $sign) (i32.const 15)) (global.get $x87_f)))
  (call $x87_c1 (global.get $x87_up))
  (local.get $m))
 ;; DE when either operand is a denormal
 (func $x87_de2 (param $am i64) (param $ase i32) (param $bm i64) (param $bse i32)
  (if (i32.or (i32.and (i32.eqz (i32.and (local.get $ase) (i32.const 0x7fff))) (i64.ne (local.get $am) (i64.const 0)))
              (i32.and (i32.eqz (i32.and (local.get $bse) (i32.const 0x7fff))) (i64.ne (local.get $bm) (i64.const 0))))
   (then (call $x87_flag (i32.const {DE})))))
 (func $x87_dnan (result i64)
  (call $x87_flag (i32.const {IE}))
  (global.set $x87_se (i32.const 0xffff))
  (i64.const {_DEFAULT_NAN_M}))
 (func $x87_ret (param $m i64) (param $se i32) (result i64)
  (global.set $x87_se (local.get $se)) (local.get $m))
 ;; NaN result of a two-operand operation where one operand is a NaN or unsupported
 (func $x87_nan2 (param $am i64) (param $ase i32) (param $bm i64) (param $bse i32) (result i64)
  (local $ca i32) (local $cb i32) (local $qa i64) (local $qb i64)
  (local.set $ca (call $x87_cls (local.get $am) (local.get $ase)))
  (local.set $cb (call $x87_cls (local.get $bm) (local.get $bse)))
  (if (i32.or (i32.eq (local.get $ca) (i32.const 5)) (i32.eq (local.get $cb) (i32.const 5))) (then (return (call $x87_dnan))))
  (if (i32.or (i32.eq (local.get $ca) (i32.const 4)) (i32.eq (local.get $cb) (i32.const 4))) (then (call $x87_flag (i32.const {IE}))))
  (local.set $qa (i64.or (local.get $am) (i64.const 0x4000000000000000)))
  (local.set $qb (i64.or (local.get $bm) (i64.const 0x4000000000000000)))
  (if (i32.lt_u (local.get $ca) (i32.const 3)) (then (return (call $x87_ret (local.get $qb) (local.get $bse)))))
  (if (i32.lt_u (local.get $cb) (i32.const 3)) (then (return (call $x87_ret (local.get $qa) (local.get $ase)))))
  ;; a signalling and a quiet NaN: the quiet one
  (if (i32.and (i32.eq (local.get $ca) (i32.const 4)) (i32.eq (local.get $cb) (i32.const 3)))
   (then (return (call $x87_ret (local.get $qb) (local.get $bse)))))
  (if (i32.and (i32.eq (local.get $ca) (i32.const 3)) (i32.eq (local.get $cb) (i32.const 4)))
   (then (return (call $x87_ret (local.get $qa) (local.get $ase)))))
  (if (i64.lt_u (i64.shl (local.get $qa) (i64.const 1)) (i64.shl (local.get $qb) (i64.const 1)))
   (then (return (call $x87_ret (local.get $qb) (local.get $bse)))))
  (if (i64.gt_u (i64.shl (local.get $qa) (i64.const 1)) (i64.shl (local.get $qb) (i64.const 1)))
   (then (return (call $x87_ret (local.get $qa) (local.get $ase)))))
  (call $x87_ret (local.get $qa) (select (local.get $ase) (local.get $bse) (i32.lt_u (local.get $ase) (local.get $bse)))))
 ;; ---- arithmetic ----------------------------------------------------------------------------
 (func $x87_add (param $am i64) (param $ase i32) (param $bm i64) (param $bse i32) (param $neg i32) (result i64)
  (local $ca i32) (local $cb i32) (local $sa i32) (local $sb i32) (local $ea i32) (local $eb i32)
  (local $t i64) (local $ti i32) (local $hi i64) (local $lo i64) (local $bl i64) (local $n i32)
  (local.set $ca (call $x87_cls (local.get $am) (local.get $ase)))
  (local.set $cb (call $x87_cls (local.get $bm) (local.get $bse)))
  (if (i32.or (i32.ge_u (local.get $ca) (i32.const 3)) (i32.ge_u (local.get $cb) (i32.const 3)))
   (then (return (call $x87_nan2 (local.get $am) (local.get $ase) (local.get $bm) (local.get $bse)))))
  (call $x87_de2 (local.get $am) (local.get $ase) (local.get $bm) (local.get $bse))
  (if (local.get $neg) (then (local.set $bse (i32.xor (local.get $bse) (i32.const 0x8000)))))
  (local.set $sa (i32.shr_u (local.get $ase) (i32.const 15)))
  (local.set $sb (i32.shr_u (local.get $bse) (i32.const 15)))
  (if (i32.eq (local.get $ca) (i32.const 2)) (then
    (if (i32.and (i32.eq (local.get $cb) (i32.const 2)) (i32.ne (local.get $sa) (local.get $sb))) (then (return (call $x87_dnan))))
    (call $x87_c1 (i32.const 0))
    (return (call $x87_ret (local.get $am) (local.get $ase)))))
  (if (i32.eq (local.get $cb) (i32.const 2)) (then
    (call $x87_c1 (i32.const 0))
    (return (call $x87_ret (local.get $bm) (local.get $bse)))))
  (if (i32.and (i32.eqz (local.get $ca)) (i32.eqz (local.get $cb))) (then
    (call $x87_c1 (i32.const 0))
    (return (call $x87_ret (i64.const 0) (i32.shl
      (select (i32.or (local.get $sa) (local.get $sb)) (i32.and (local.get $sa) (local.get $sb)) (i32.eq (call $x87_rc) (i32.const 1)))
      (i32.const 15))))))
  (local.set $am (call $x87_norm (local.get $am) (local.get $ase)))
  (local.set $ea (global.get $x87_e))
  (local.set $bm (call $x87_norm (local.get $bm) (local.get $bse)))
  (local.set $eb (global.get $x87_e))
  (if (i32.eqz (local.get $ca)) (then (return (call $x87_pack (local.get $sb) (local.get $eb) (local.get $bm) (i64.const 0)))))
  (if (i32.eqz (local.get $cb)) (then (return (call $x87_pack (local.get $sa) (local.get $ea) (local.get $am) (i64.const 0)))))
  (if (i32.or (i32.lt_s (local.get $ea) (local.get $eb))
              (i32.and (i32.eq (local.get $ea) (local.get $eb)) (i64.lt_u (local.get $am) (local.get $bm)))) (then
    (local.set $t (local.get $am)) (local.set $am (local.get $bm)) (local.set $bm (local.get $t))
    (local.set $ti (local.get $ea)) (local.set $ea (local.get $eb)) (local.set $eb (local.get $ti))
    (local.set $ti (local.get $sa)) (local.set $sa (local.get $sb)) (local.set $sb (local.get $ti))))
  (local.set $bm (call $x87_shr128 (local.get $bm) (i64.const 0) (i32.sub (local.get $ea) (local.get $eb))))
  (local.set $bl (global.get $x87_lo))
  (if (i32.eq (local.get $sa) (local.get $sb))
   (then
    (local.set $hi (i64.add (local.get $am) (local.get $bm)))
    (local.set $lo (local.get $bl))
    (if (i64.lt_u (local.get $hi) (local.get $am)) (then
      (local.set $hi (i64.or (call $x87_shr128 (local.get $hi) (local.get $lo) (i32.const 1)) (i64.const {_INT_BIT})))
      (local.set $lo (global.get $x87_lo))
      (local.set $ea (i32.add (local.get $ea) (i32.const 1))))))
   (else
    (local.set $lo (i64.sub (i64.const 0) (local.get $bl)))
    (local.set $hi (i64.sub (i64.sub (local.get $am) (local.get $bm)) (i64.extend_i32_u (i64.ne (local.get $bl) (i64.const 0)))))
    (if (i64.eqz (i64.or (local.get $hi) (local.get $lo))) (then
      (call $x87_c1 (i32.const 0))
      (return (call $x87_ret (i64.const 0) (select (i32.const 0x8000) (i32.const 0) (i32.eq (call $x87_rc) (i32.const 1)))))))
    (if (i64.eqz (local.get $hi)) (then
      (local.set $hi (local.get $lo)) (local.set $lo (i64.const 0))
      (local.set $ea (i32.sub (local.get $ea) (i32.const 64)))))
    (local.set $n (i32.wrap_i64 (i64.clz (local.get $hi))))
    (if (local.get $n) (then
      (local.set $hi (i64.or (i64.shl (local.get $hi) (i64.extend_i32_u (local.get $n)))
                             (i64.shr_u (local.get $lo) (i64.extend_i32_u (i32.sub (i32.const 64) (local.get $n))))))
      (local.set $lo (i64.shl (local.get $lo) (i64.extend_i32_u (local.get $n))))
      (local.set $ea (i32.sub (local.get $ea) (local.get $n)))))))
  (call $x87_pack (local.get $sa) (local.get $ea) (local.get $hi) (local.get $lo)))
 (func $x87_mul (param $am i64) (param $ase i32) (param $bm i64) (param $bse i32) (result i64)
  (local $ca i32) (local $cb i32) (local $s i32) (local $e i32) (local $hi i64) (local $lo i64)
  (local.set $ca (call $x87_cls (local.get $am) (local.get $ase)))
  (local.set $cb (call $x87_cls (local.get $bm) (local.get $bse)))
  (if (i32.or (i32.ge_u (local.get $ca) (i32.const 3)) (i32.ge_u (local.get $cb) (i32.const 3)))
   (then (return (call $x87_nan2 (local.get $am) (local.get $ase) (local.get $bm) (local.get $bse)))))
  (call $x87_de2 (local.get $am) (local.get $ase) (local.get $bm) (local.get $bse))
  (local.set $s (i32.shr_u (i32.xor (local.get $ase) (local.get $bse)) (i32.const 15)))
  (if (i32.or (i32.eq (local.get $ca) (i32.const 2)) (i32.eq (local.get $cb) (i32.const 2))) (then
    (if (i32.or (i32.eqz (local.get $ca)) (i32.eqz (local.get $cb))) (then (return (call $x87_dnan))))
    (call $x87_c1 (i32.const 0))
    (return (call $x87_ret (i64.const {_INT_BIT}) (i32.or (i32.shl (local.get $s) (i32.const 15)) (i32.const 0x7fff))))))
  (if (i32.or (i32.eqz (local.get $ca)) (i32.eqz (local.get $cb))) (then
    (if (local.get $ca) (then (drop (call $x87_norm (local.get $am) (local.get $ase)))))
    (if (local.get $cb) (then (drop (call $x87_norm (local.get $bm) (local.get $bse)))))
    (call $x87_c1 (i32.const 0))
    (return (call $x87_ret (i64.const 0) (i32.shl (local.get $s) (i32.const 15))))))
  (local.set $am (call $x87_norm (local.get $am) (local.get $ase)))
  (local.set $e (global.get $x87_e))
  (local.set $bm (call $x87_norm (local.get $bm) (local.get $bse)))
  (local.set $e (i32.add (local.get $e) (i32.sub (global.get $x87_e) (i32.const 16382))))
  (local.set $hi (call $mulhi_u (local.get $am) (local.get $bm)))
  (local.set $lo (i64.mul (local.get $am) (local.get $bm)))
  (if (i64.ge_s (local.get $hi) (i64.const 0)) (then
    (local.set $hi (i64.or (i64.shl (local.get $hi) (i64.const 1)) (i64.shr_u (local.get $lo) (i64.const 63))))
    (local.set $lo (i64.shl (local.get $lo) (i64.const 1)))
    (local.set $e (i32.sub (local.get $e) (i32.const 1)))))
  (call $x87_pack (local.get $s) (local.get $e) (local.get $hi) (local.get $lo)))
 (func $x87_div (param $am i64) (param $ase i32) (param $bm i64) (param $bse i32) (result i64)
  (local $ca i32) (local $cb i32) (local $s i32) (local $e i32) (local $q i64) (local $q2 i64)
  (local.set $ca (call $x87_cls (local.get $am) (local.get $ase)))
  (local.set $cb (call $x87_cls (local.get $bm) (local.get $bse)))
  (if (i32.or (i32.ge_u (local.get $ca) (i32.const 3)) (i32.ge_u (local.get $cb) (i32.const 3)))
   (then (return (call $x87_nan2 (local.get $am) (local.get $ase) (local.get $bm) (local.get $bse)))))
  (local.set $s (i32.shr_u (i32.xor (local.get $ase) (local.get $bse)) (i32.const 15)))
  (if (local.get $cb) (then (call $x87_de2 (local.get $am) (local.get $ase) (local.get $bm) (local.get $bse))))
  (call $x87_c1 (i32.const 0))
  (if (i32.eq (local.get $ca) (i32.const 2)) (then
    (if (i32.eq (local.get $cb) (i32.const 2)) (then (return (call $x87_dnan))))
    (if (i32.eq (local.get $cb) (i32.const 1)) (then (drop (call $x87_norm (local.get $bm) (local.get $bse)))))
    (return (call $x87_ret (i64.const {_INT_BIT}) (i32.or (i32.shl (local.get $s) (i32.const 15)) (i32.const 0x7fff))))))
  (if (i32.eq (local.get $cb) (i32.const 2)) (then
    (if (i32.eq (local.get $ca) (i32.const 1)) (then (drop (call $x87_norm (local.get $am) (local.get $ase)))))
    (return (call $x87_ret (i64.const 0) (i32.shl (local.get $s) (i32.const 15))))))
  (if (i32.eqz (local.get $cb)) (then
    (if (i32.eqz (local.get $ca)) (then (return (call $x87_dnan))))
    (call $x87_flag (i32.const {ZE}))
    (return (call $x87_ret (i64.const {_INT_BIT}) (i32.or (i32.shl (local.get $s) (i32.const 15)) (i32.const 0x7fff))))))
  (if (i32.eqz (local.get $ca)) (then
    (drop (call $x87_norm (local.get $bm) (local.get $bse)))
    (return (call $x87_ret (i64.const 0) (i32.shl (local.get $s) (i32.const 15))))))
  (local.set $am (call $x87_norm (local.get $am) (local.get $ase)))
  (local.set $e (global.get $x87_e))
  (local.set $bm (call $x87_norm (local.get $bm) (local.get $bse)))
  (local.set $e (i32.add (i32.sub (local.get $e) (global.get $x87_e)) (i32.const 16383)))
  (if (i64.lt_u (local.get $am) (local.get $bm))
   (then
    (local.set $q (call $udiv128 (local.get $am) (i64.const 0) (local.get $bm)))
    (local.set $e (i32.sub (local.get $e) (i32.const 1))))
   (else
    (local.set $q (call $udiv128 (i64.shr_u (local.get $am) (i64.const 1)) (i64.shl (local.get $am) (i64.const 63)) (local.get $bm)))))
  (local.set $q2 (call $udiv128 (global.get $rem) (i64.const 0) (local.get $bm)))
  (call $x87_pack (local.get $s) (local.get $e) (local.get $q)
    (i64.or (local.get $q2) (i64.extend_i32_u (i64.ne (global.get $rem) (i64.const 0))))))
 (func $x87_sqrt (param $am i64) (param $ase i32) (result i64)
  (local $ca i32) (local $e i32) (local $nh i64) (local $nl i64) (local $r i64) (local $c i64) (local $bit i32)
  (local $ph i64) (local $pl i64) (local $rh i64) (local $rl i64)
  (local.set $ca (call $x87_cls (local.get $am) (local.get $ase)))
  (if (i32.ge_u (local.get $ca) (i32.const 3)) (then (return (call $x87_nan2 (local.get $am) (local.get $ase) (local.get $am) (local.get $ase)))))
  (call $x87_c1 (i32.const 0))
  (if (i32.eqz (local.get $ca)) (then (return (call $x87_ret (local.get $am) (local.get $ase)))))
  (if (i32.ge_u (local.get $ase) (i32.const 0x8000)) (then (return (call $x87_dnan))))
  (if (i32.eq (local.get $ca) (i32.const 2)) (then (return (call $x87_ret (local.get $am) (local.get $ase)))))
  (local.set $am (call $x87_norm (local.get $am) (local.get $ase)))
  (local.set $e (i32.sub (global.get $x87_e) (i32.const 16383)))
  (if (i32.and (local.get $e) (i32.const 1))
   (then (local.set $nh (local.get $am)) (local.set $nl (i64.const 0)))
   (else (local.set $nh (i64.shr_u (local.get $am) (i64.const 1))) (local.set $nl (i64.shl (local.get $am) (i64.const 63)))))
  (local.set $e (i32.add (i32.shr_s (local.get $e) (i32.const 1)) (i32.const 16383)))
  (local.set $bit (i32.const 64))
  (loop $l
   (local.set $bit (i32.sub (local.get $bit) (i32.const 1)))
   (local.set $c (i64.or (local.get $r) (i64.shl (i64.const 1) (i64.extend_i32_u (local.get $bit)))))
   (local.set $ph (call $mulhi_u (local.get $c) (local.get $c)))
   (local.set $pl (i64.mul (local.get $c) (local.get $c)))
   (if (i32.or (i64.lt_u (local.get $ph) (local.get $nh))
               (i32.and (i64.eq (local.get $ph) (local.get $nh)) (i64.le_u (local.get $pl) (local.get $nl))))
    (then (local.set $r (local.get $c))))
   (br_if $l (local.get $bit)))
  (local.set $pl (i64.mul (local.get $r) (local.get $r)))
  (local.set $rl (i64.sub (local.get $nl) (local.get $pl)))
  (local.set $rh (i64.sub (i64.sub (local.get $nh) (call $mulhi_u (local.get $r) (local.get $r)))
                          (i64.extend_i32_u (i64.lt_u (local.get $nl) (local.get $pl)))))
  (call $x87_pack (i32.const 0) (local.get $e) (local.get $r)
    (if (result i64) (i32.or (i64.ne (local.get $rh) (i64.const 0)) (i64.gt_u (local.get $rl) (local.get $r)))
     (then (i64.const 0xC000000000000000))
     (else (i64.extend_i32_u (i64.ne (local.get $rl) (i64.const 0)))))))
 ;; $op: 0 add, 1 sub, 2 mul, 3 div (a op b)
 (func $x87_op (param $op i32) (param $am i64) (param $ase i32) (param $bm i64) (param $bse i32) (result i64)
  (if (i32.lt_u (local.get $op) (i32.const 2)) (then
    (return (call $x87_add (local.get $am) (local.get $ase) (local.get $bm) (local.get $bse) (local.get $op)))))
  (if (i32.eq (local.get $op) (i32.const 2)) (then
    (return (call $x87_mul (local.get $am) (local.get $ase) (local.get $bm) (local.get $bse)))))
  (call $x87_div (local.get $am) (local.get $ase) (local.get $bm) (local.get $bse)))
 ;; st(d) = st(a) op st(b)
 (func $x87_op_st (param $op i32) (param $d i32) (param $a i32) (param $b i32)
  (local $m i64)
  (local.set $m (call $x87_op (local.get $op) (call $x87_m (local.get $a)) (call $x87_sei (local.get $a))
                              (call $x87_m (local.get $b)) (call $x87_sei (local.get $b))))
  (call $x87_put (local.get $d) (local.get $m) (global.get $x87_se)))
 ;; st(0) = st(0) op v, or v op st(0) when $rev
 (func $x87_op_v (param $op i32) (param $rev i32) (param $vm i64) (param $vse i32)
  (local $m i64)
  ;; no DE for a division by zero
  (if (i32.and (i32.eq (local.get $op) (i32.const 3))
               (select (i64.eqz (i64.or (call $x87_m (i32.const 0)) (i64.extend_i32_u (i32.and (call $x87_sei (i32.const 0)) (i32.const 0x7fff)))))
                       (i64.eqz (i64.or (local.get $vm) (i64.extend_i32_u (i32.and (local.get $vse) (i32.const 0x7fff)))))
                       (local.get $rev)))
   (then (global.set $x87_mden (i32.const 0))))
  (call $x87_mem_de)
  (if (local.get $rev)
   (then (local.set $m (call $x87_op (local.get $op) (local.get $vm) (local.get $vse)
                                     (call $x87_m (i32.const 0)) (call $x87_sei (i32.const 0)))))
   (else (local.set $m (call $x87_op (local.get $op) (call $x87_m (i32.const 0)) (call $x87_sei (i32.const 0))
                                     (local.get $vm) (local.get $vse)))))
  (call $x87_put (i32.const 0) (local.get $m) (global.get $x87_se)))
 (func $x87_fsqrt
  (local $m i64)
  (local.set $m (call $x87_sqrt (call $x87_m (i32.const 0)) (call $x87_sei (i32.const 0))))
  (call $x87_put (i32.const 0) (local.get $m) (global.get $x87_se)))
 ;; ---- conversions -------------------------------------------------------------------------------
 ;; binary32/64 bits -> extended (exact); $mb mantissa bits (23 or 52), $emask (0xff or 0x7ff)
 (global $x87_mden (mut i32) (i32.const 0))
 (func $x87_from_fp (param $v i64) (param $mb i32) (param $emask i32) (result i64)
  (local $r i64)
  (local.set $r (call $x87_from_fp_q (local.get $v) (local.get $mb) (local.get $emask)))
  (if (global.get $x87_mden) (then (call $x87_flag (i32.const {DE}))))
  (if (i32.eq (call $x87_cls (local.get $r) (global.get $x87_se)) (i32.const 4)) (then
    (call $x87_flag (i32.const {IE}))
    (local.set $r (i64.or (local.get $r) (i64.const 0x4000000000000000)))))
  (local.get $r))
 ;; as $x87_from_fp, but a denormal only sets $x87_mden and a signalling NaN stays one
 ;; (the operation decides about DE and IE, and which NaN is the result)
 (func $x87_from_fp_q (param $v i64) (param $mb i32) (param $emask i32) (result i64)
  (local $s i32) (local $e i32) (local $f i64) (local $bias i32) (local $n i32) (local $sh i64)
  (global.set $x87_mden (i32.const 0))
  (local.set $sh (i64.extend_i32_u (local.get $mb)))
  (local.set $e (i32.and (i32.wrap_i64 (i64.shr_u (local.get $v) (local.get $sh))) (local.get $emask)))
  (local.set $s (i32.and (i32.wrap_i64 (i64.shr_u (local.get $v) (i64.extend_i32_u (i32.add (local.get $mb) (i32.popcnt (local.get $emask)))))) (i32.const 1)))
  (local.set $f (i64.and (local.get $v) (i64.sub (i64.shl (i64.const 1) (local.get $sh)) (i64.const 1))))
  (local.set $bias (i32.shr_u (local.get $emask) (i32.const 1)))
  (local.set $f (i64.shl (local.get $f) (i64.extend_i32_u (i32.sub (i32.const 63) (local.get $mb)))))
  (if (i32.eq (local.get $e) (local.get $emask)) (then
    (if (i64.eqz (local.get $f)) (then (return (call $x87_ret (i64.const {_INT_BIT}) (i32.or (i32.shl (local.get $s) (i32.const 15)) (i32.const 0x7fff))))))
    (return (call $x87_ret (i64.or (local.get $f) (i64.const {_INT_BIT}))
                           (i32.or (i32.shl (local.get $s) (i32.const 15)) (i32.const 0x7fff))))))
  (if (i32.eqz (local.get $e)) (then
    (if (i64.eqz (local.get $f)) (then (return (call $x87_ret (i64.const 0) (i32.shl (local.get $s) (i32.const 15))))))
    (global.set $x87_mden (i32.const 1))
    (local.set $n (i32.wrap_i64 (i64.clz (local.get $f))))
    (return (call $x87_ret (i64.shl (local.get $f) (i64.extend_i32_u (local.get $n)))
      (i32.or (i32.shl (local.get $s) (i32.const 15))
              (i32.sub (i32.sub (i32.const 16384) (local.get $bias)) (local.get $n)))))))
  (call $x87_ret (i64.or (local.get $f) (i64.const {_INT_BIT}))
    (i32.or (i32.shl (local.get $s) (i32.const 15)) (i32.add (i32.sub (local.get $e) (local.get $bias)) (i32.const 16383)))))
 ;; extended -> binary32/64 bits with the control word's rounding (sets C1, PE, OE, UE, IE)
 (func $x87_to_fp (param $m i64) (param $se i32) (param $mb i32) (param $emask i32) (result i64)
  (local $cl i32) (local $s i64) (local $sh i64) (local $r i64) (local $e i32)
  (local.set $cl (call $x87_cls (local.get $m) (local.get $se)))
  (local.set $sh (i64.extend_i32_u (local.get $mb)))
  (local.set $s (i64.shl (i64.extend_i32_u (i32.shr_u (local.get $se) (i32.const 15)))
                         (i64.extend_i32_u (i32.add (local.get $mb) (i32.popcnt (local.get $emask))))))
  (call $x87_c1 (i32.const 0))
  (if (i32.eqz (local.get $cl)) (then (return (local.get $s))))
  (if (i32.eq (local.get $cl) (i32.const 2)) (then
    (return (i64.or (local.get $s) (i64.shl (i64.extend_i32_u (local.get $emask)) (local.get $sh))))))
  (if (i32.ge_u (local.get $cl) (i32.const 3)) (then
    (if (i32.eq (local.get $cl) (i32.const 5)) (then
      (call $x87_flag (i32.const {IE}))
      (local.set $m (i64.const {_DEFAULT_NAN_M}))
      (local.set $s (i64.shl (i64.const 1) (i64.extend_i32_u (i32.add (local.get $mb) (i32.popcnt (local.get $emask))))))))
    (if (i32.eq (local.get $cl) (i32.const 4)) (then (call $x87_flag (i32.const {IE}))))
    (return (i64.or (i64.or (local.get $s) (i64.shl (i64.extend_i32_u (local.get $emask)) (local.get $sh)))
      (i64.or (i64.shl (i64.const 1) (i64.sub (local.get $sh) (i64.const 1)))
              (i64.and (i64.shr_u (local.get $m) (i64.sub (i64.const 63) (local.get $sh)))
                       (i64.sub (i64.shl (i64.const 1) (local.get $sh)) (i64.const 1))))))))
  (local.set $m (call $x87_norm_q (local.get $m) (local.get $se)))
  (local.set $e (i32.add (i32.sub (global.get $x87_e) (i32.const 16383)) (i32.shr_u (local.get $emask) (i32.const 1))))
  (local.set $r (call $x87_rnd (i32.shr_u (local.get $se) (i32.const 15)) (local.get $e) (local.get $m) (i64.const 0)
                                (i32.add (local.get $mb) (i32.const 1)) (local.get $emask)))
  (call $x87_c1 (global.get $x87_up))
  (i64.or (i64.or (local.get $s) (i64.shl (i64.extend_i32_u (global.get $x87_f)) (local.get $sh)))
          (i64.and (i64.shr_u (local.get $r) (i64.sub (i64.const 63) (local.get $sh)))
                   (i64.sub (i64.shl (i64.const 1) (local.get $sh)) (i64.const 1)))))
 ;; integer part of a finite nonzero value, rounded with $rc (0..3); $x87_inx, $x87_up describe the rounding
 (func $x87_intpart (param $m i64) (param $e i32) (param $sign i32) (param $rc i32) (result i64)
  (local $ip i64) (local $fr i64) (local $up i32)
  (if (i32.ge_s (local.get $e) (i32.const 63))
   (then (local.set $ip (local.get $m)))
   (else (if (i32.ge_s (local.get $e) (i32.const 0))
    (then (local.set $ip (i64.shr_u (local.get $m) (i64.extend_i32_u (i32.sub (i32.const 63) (local.get $e)))))
          (local.set $fr (i64.shl (local.get $m) (i64.extend_i32_u (i32.add (local.get $e) (i32.const 1))))))
    (else (local.set $fr (call $x87_shr128 (local.get $m) (i64.const 0) (i32.sub (i32.const -1) (local.get $e))))
          (local.set $fr (i64.or (local.get $fr) (i64.extend_i32_u (i64.ne (global.get $x87_lo) (i64.const 0)))))))))
  (local.set $up
   (if (result i32) (i32.eqz (local.get $rc))
    (then (i32.or (i64.gt_u (local.get $fr) (i64.const {_INT_BIT}))
                  (i32.and (i64.eq (local.get $fr) (i64.const {_INT_BIT})) (i32.wrap_i64 (i64.and (local.get $ip) (i64.const 1))))))
    (else (if (result i32) (i32.eq (local.get $rc) (i32.const 1))
     (then (i32.and (i64.ne (local.get $fr) (i64.const 0)) (local.get $sign)))
     (else (if (result i32) (i32.eq (local.get $rc) (i32.const 2))
      (then (i32.and (i64.ne (local.get $fr) (i64.const 0)) (i32.eqz (local.get $sign))))
      (else (i32.const 0))))))))
  (global.set $x87_inx (i64.ne (local.get $fr) (i64.const 0)))
  (global.set $x87_up (local.get $up))
  (i64.add (local.get $ip) (i64.extend_i32_u (local.get $up))))
 ;; extended -> signed integer of $bits bits (16, 32, 64); $trunc: chop instead of the control word's mode
 (func $x87_to_int (param $m i64) (param $se i32) (param $bits i32) (param $trunc i32) (result i64)
  (local $cl i32) (local $e i32) (local $s i32) (local $ip i64) (local $lim i64)
  (local.set $cl (call $x87_cls (local.get $m) (local.get $se)))
  (local.set $lim (i64.shl (i64.const 1) (i64.extend_i32_u (i32.sub (local.get $bits) (i32.const 1)))))
  (call $x87_c1 (i32.const 0))
  (if (i32.eqz (local.get $cl)) (then (return (i64.const 0))))
  (if (i32.ge_u (local.get $cl) (i32.const 2)) (then (call $x87_flag (i32.const {IE})) (return (local.get $lim))))
  (local.set $s (i32.shr_u (local.get $se) (i32.const 15)))
  (local.set $m (call $x87_norm_q (local.get $m) (local.get $se)))
  (local.set $e (i32.sub (global.get $x87_e) (i32.const 16383)))
  (if (i32.ge_s (local.get $e) (i32.const 64)) (then (call $x87_flag (i32.const {IE})) (return (local.get $lim))))
  (local.set $ip (call $x87_intpart (local.get $m) (local.get $e) (local.get $s)
                                    (select (i32.const 3) (call $x87_rc) (local.get $trunc))))
  (if (i64.gt_u (local.get $ip) (i64.sub (local.get $lim) (i64.extend_i32_u (i32.eqz (local.get $s))))) (then
    (call $x87_flag (i32.const {IE})) (return (local.get $lim))))
  (if (global.get $x87_inx) (then (call $x87_flag (i32.const {PE}))))
  (call $x87_c1 (global.get $x87_up))
  (select (i64.sub (i64.const 0) (local.get $ip)) (local.get $ip) (local.get $s)))
 ;; signed 64-bit integer -> extended (exact)
 (func $x87_from_int (param $v i64) (result i64)
  (local $s i32) (local $n i32)
  (global.set $x87_mden (i32.const 0))
  (if (i64.eqz (local.get $v)) (then (return (call $x87_ret (i64.const 0) (i32.const 0)))))
  (local.set $s (i64.lt_s (local.get $v) (i64.const 0)))
  (if (local.get $s) (then (local.set $v (i64.sub (i64.const 0) (local.get $v)))))
  (local.set $n (i32.wrap_i64 (i64.clz (local.get $v))))
  (call $x87_ret (i64.shl (local.get $v) (i64.extend_i32_u (local.get $n)))
    (i32.or (i32.shl (local.get $s) (i32.const 15)) (i32.sub (i32.const {16383 + 63}) (local.get $n)))))
 (func $x87_frndint
  (local $m i64) (local $se i32) (local $cl i32) (local $e i32) (local $s i32) (local $ip i64) (local $n i32)
  (local.set $m (call $x87_m (i32.const 0)))
  (local.set $se (call $x87_sei (i32.const 0)))
  (local.set $cl (call $x87_cls (local.get $m) (local.get $se)))
  (call $x87_c1 (i32.const 0))
  (if (i32.ge_u (local.get $cl) (i32.const 3)) (then
    (local.set $m (call $x87_nan2 (local.get $m) (local.get $se) (local.get $m) (local.get $se)))
    (call $x87_put (i32.const 0) (local.get $m) (global.get $x87_se))
    (return)))
  (if (i32.ne (local.get $cl) (i32.const 1)) (then (return)))
  (local.set $s (i32.shr_u (local.get $se) (i32.const 15)))
  (local.set $m (call $x87_norm (local.get $m) (local.get $se)))
  (local.set $e (i32.sub (global.get $x87_e) (i32.const 16383)))
  (if (i32.ge_s (local.get $e) (i32.const 63)) (then (return)))
  (local.set $ip (call $x87_intpart (local.get $m) (local.get $e) (local.get $s) (call $x87_rc)))
  (if (global.get $x87_inx) (then (call $x87_flag (i32.const {PE}))))
  (call $x87_c1 (global.get $x87_up))
  (if (i64.eqz (local.get $ip)) (then
    (call $x87_put (i32.const 0) (i64.const 0) (i32.shl (local.get $s) (i32.const 15)))
    (return)))
  (local.set $n (i32.wrap_i64 (i64.clz (local.get $ip))))
  (call $x87_put (i32.const 0) (i64.shl (local.get $ip) (i64.extend_i32_u (local.get $n)))
    (i32.or (i32.shl (local.get $s) (i32.const 15)) (i32.sub (i32.const {16383 + 63}) (local.get $n)))))
 ;; ---- compare ------------------------------------------------------------------------------------
 ;; 0 a > b, 1 a < b, 2 equal, 3 unordered; $sig: any NaN raises IE (fcom), else only SNaN (fucom)
 (func $x87_cmp (param $am i64) (param $ase i32) (param $bm i64) (param $bse i32) (param $sig i32) (result i32)
  (local $ca i32) (local $cb i32) (local $sa i32) (local $sb i32) (local $gt i32)
  (local.set $ca (call $x87_cls (local.get $am) (local.get $ase)))
  (local.set $cb (call $x87_cls (local.get $bm) (local.get $bse)))
  (if (i32.or (i32.ge_u (local.get $ca) (i32.const 3)) (i32.ge_u (local.get $cb) (i32.const 3))) (then
    (if (i32.or (local.get $sig) (i32.or (i32.ge_u (local.get $ca) (i32.const 4)) (i32.ge_u (local.get $cb) (i32.const 4))))
     (then (call $x87_flag (i32.const {IE}))))
    (return (i32.const 3))))
  (if (i32.and (i32.eqz (i32.and (local.get $ase) (i32.const 0x7fff))) (i64.ne (local.get $am) (i64.const 0))) (then (call $x87_flag (i32.const {DE}))))
  (if (i32.and (i32.eqz (i32.and (local.get $bse) (i32.const 0x7fff))) (i64.ne (local.get $bm) (i64.const 0))) (then (call $x87_flag (i32.const {DE}))))
  (if (i32.and (i32.eqz (local.get $ca)) (i32.eqz (local.get $cb))) (then (return (i32.const 2))))
  (local.set $sa (i32.shr_u (local.get $ase) (i32.const 15)))
  (local.set $sb (i32.shr_u (local.get $bse) (i32.const 15)))
  (if (i32.ne (local.get $sa) (local.get $sb)) (then (return (local.get $sa))))
  (local.set $ase (i32.and (local.get $ase) (i32.const 0x7fff)))
  (local.set $bse (i32.and (local.get $bse) (i32.const 0x7fff)))
  (if (i32.and (i32.eq (local.get $ase) (local.get $bse)) (i64.eq (local.get $am) (local.get $bm))) (then (return (i32.const 2))))
  (local.set $gt (i32.or (i32.gt_u (local.get $ase) (local.get $bse))
                         (i32.and (i32.eq (local.get $ase) (local.get $bse)) (i64.gt_u (local.get $am) (local.get $bm)))))
  (i32.xor (i32.eqz (local.get $gt)) (local.get $sa)))
 (func $x87_cmp_st (param $i i32) (param $sig i32) (result i32)
  (call $x87_c1 (i32.const 0))
  (call $x87_cmp (call $x87_m (i32.const 0)) (call $x87_sei (i32.const 0))
                 (call $x87_m (local.get $i)) (call $x87_sei (local.get $i)) (local.get $sig)))
 ;; a memory operand that was a denormal binary32/64 raises DE unless st(0) is a NaN
 (func $x87_mem_de
  (if (i32.and (global.get $x87_mden) (i32.lt_u (call $x87_cls (call $x87_m (i32.const 0)) (call $x87_sei (i32.const 0))) (i32.const 3)))
   (then (call $x87_flag (i32.const {DE}))))
  (global.set $x87_mden (i32.const 0)))
 (func $x87_cmp_v (param $m i64) (param $se i32) (param $sig i32) (result i32)
  (call $x87_mem_de)
  (call $x87_c1 (i32.const 0))
  (call $x87_cmp (call $x87_m (i32.const 0)) (call $x87_sei (i32.const 0)) (local.get $m) (local.get $se) (local.get $sig)))
 (func $x87_fxam
  (local $m i64) (local $se i32) (local $cl i32) (local $r i32) (local $sw i32)
  (local.set $m (call $x87_m (i32.const 0)))
  (local.set $se (call $x87_sei (i32.const 0)))
  (local.set $cl (call $x87_cls (local.get $m) (local.get $se)))
  (local.set $r (select (i32.const 0) (i32.const {C0}) (i32.eq (local.get $cl) (i32.const 5))))
  (if (i32.eq (local.get $cl) (i32.const 2)) (then (local.set $r (i32.const {C2 | C0}))))
  (if (i32.eq (local.get $cl) (i32.const 1)) (then
    (local.set $r (select (i32.const {C3 | C2}) (i32.const {C2}) (i32.eqz (i32.and (local.get $se) (i32.const 0x7fff)))))))
  (if (i32.eqz (local.get $cl)) (then (local.set $r (i32.const {C3}))))
  (if (i32.eqz (i32.and (i32.shr_u (i32.load16_u $c (i32.const {_TAG})) (call $x87_phys (i32.const 0))) (i32.const 1)))
   (then (local.set $r (i32.const {C3 | C0}))))
  (local.set $r (i32.or (local.get $r) (i32.shl (i32.shr_u (local.get $se) (i32.const 15)) (i32.const 9))))
  (i32.store16 $c (i32.const {_SW}) (i32.or (i32.and (i32.load16_u $c (i32.const {_SW})) (i32.const {0xFFFF ^ (C0 | C1 | C2 | C3)}))
                                         (local.get $r))))
 ;; ---- partial remainder -------------------------------------------------------------------------
 ;; fprem ($near = 0: quotient chopped) / fprem1 ($near = 1: quotient rounded to nearest)
 (func $x87_fprem (param $near i32)
  (local $am i64) (local $ase i32) (local $bm i64) (local $bse i32) (local $ca i32) (local $cb i32)
  (local $ea i32) (local $eb i32) (local $d i32) (local $q i64) (local $r i64) (local $carry i32) (local $n i32)
  (local $s i32) (local $partial i32) (local $cc i32) (local $k i32) (local $e i32)
  (local.set $am (call $x87_m (i32.const 0))) (local.set $ase (call $x87_sei (i32.const 0)))
  (local.set $bm (call $x87_m (i32.const 1))) (local.set $bse (call $x87_sei (i32.const 1)))
  (local.set $ca (call $x87_cls (local.get $am) (local.get $ase)))
  (local.set $cb (call $x87_cls (local.get $bm) (local.get $bse)))
  (local.set $s (i32.shr_u (local.get $ase) (i32.const 15)))
  (i32.store16 $c (i32.const {_SW}) (i32.and (i32.load16_u $c (i32.const {_SW})) (i32.const {0xFFFF ^ (C1 | C2)})))
  (if (i32.or (i32.ge_u (local.get $ca) (i32.const 3)) (i32.ge_u (local.get $cb) (i32.const 3))) (then
    (local.set $am (call $x87_nan2 (local.get $am) (local.get $ase) (local.get $bm) (local.get $bse)))
    (call $x87_put (i32.const 0) (local.get $am) (global.get $x87_se))
    (return)))
  (if (i32.or (i32.eq (local.get $ca) (i32.const 2)) (i32.eqz (local.get $cb))) (then
    (call $x87_put (i32.const 0) (call $x87_dnan) (global.get $x87_se))
    (return)))
  (call $x87_de2 (local.get $am) (local.get $ase) (local.get $bm) (local.get $bse))
  (if (i32.or (i32.eqz (local.get $ca)) (i32.eq (local.get $cb) (i32.const 2))) (then (call $x87_setcc (i32.const 0)) (return)))
  (local.set $am (call $x87_norm (local.get $am) (local.get $ase)))
  (local.set $ea (global.get $x87_e))
  (local.set $bm (call $x87_norm (local.get $bm) (local.get $bse)))
  (local.set $eb (global.get $x87_e))
  (local.set $d (i32.sub (local.get $ea) (local.get $eb)))
  (if (i32.lt_s (local.get $d) (i32.const 0)) (then
    (if (i32.or (i32.eqz (local.get $near)) (i32.lt_s (local.get $d) (i32.const -1))) (then
      (call $x87_put (i32.const 0) (call $x87_packp (local.get $s) (local.get $ea) (local.get $am) (i64.const 0) (i32.const 64)) (global.get $x87_se))
      (call $x87_setcc (i32.const 0))
      (return)))
    ;; fprem1 with |a| in [|b|/2, |b|): quotient 0 or 1
    (local.set $r (local.get $am)) (local.set $e (local.get $ea))
    (if (i64.gt_u (local.get $am) (local.get $bm)) (then
      (local.set $r (i64.add (i64.sub (local.get $bm) (local.get $am)) (local.get $bm)))
      (local.set $s (i32.xor (local.get $s) (i32.const 1)))
      (local.set $q (i64.const 1))))))
  (if (i32.ge_s (local.get $d) (i32.const 0)) (then
    (local.set $partial (i32.ge_s (local.get $d) (i32.const 64)))
    (local.set $k (select (i32.add (i32.const 32) (i32.and (i32.sub (local.get $d) (i32.const 32)) (i32.const 31)))
                          (local.get $d) (local.get $partial)))
    ;; r = am mod bm, then k doublings
    (local.set $r (local.get $am))
    (if (i64.ge_u (local.get $r) (local.get $bm)) (then (local.set $r (i64.sub (local.get $r) (local.get $bm))) (local.set $q (i64.const 1))))
    (local.set $n (local.get $k))
    (block $done (loop $l
      (br_if $done (i32.eqz (local.get $n)))
      (local.set $carry (i64.lt_s (local.get $r) (i64.const 0)))
      (local.set $r (i64.shl (local.get $r) (i64.const 1)))
      (local.set $q (i64.shl (local.get $q) (i64.const 1)))
      (if (i32.or (local.get $carry) (i64.ge_u (local.get $r) (local.get $bm))) (then
        (local.set $r (i64.sub (local.get $r) (local.get $bm)))
        (local.set $q (i64.or (local.get $q) (i64.const 1)))))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $l)))
    (local.set $e (i32.add (local.get $eb) (i32.sub (local.get $d) (local.get $k))))
    (if (i32.and (local.get $near) (i32.eqz (local.get $partial))) (then
      ;; round the quotient to nearest: r > bm/2, or r == bm/2 with q odd
      (if (i32.or (i64.gt_u (local.get $r) (i64.sub (local.get $bm) (local.get $r)))
                  (i32.and (i64.eq (local.get $r) (i64.sub (local.get $bm) (local.get $r)))
                           (i32.wrap_i64 (i64.and (local.get $q) (i64.const 1))))) (then
        (local.set $r (i64.sub (local.get $bm) (local.get $r)))
        (local.set $s (i32.xor (local.get $s) (i32.const 1)))
        (local.set $q (i64.add (local.get $q) (i64.const 1)))))))))
  ;; result r * 2^(e - bias - 63), exact
  (if (i64.eqz (local.get $r))
   (then (call $x87_put (i32.const 0) (i64.const 0) (i32.shl (i32.shr_u (local.get $ase) (i32.const 15)) (i32.const 15))))
   (else
    (local.set $n (i32.wrap_i64 (i64.clz (local.get $r))))
    (local.set $r (call $x87_packp (local.get $s) (i32.sub (local.get $e) (local.get $n))
                                  (i64.shl (local.get $r) (i64.extend_i32_u (local.get $n))) (i64.const 0) (i32.const 64)))
    (call $x87_put (i32.const 0) (local.get $r) (global.get $x87_se))))
  (local.set $cc (i32.const 0))
  (if (local.get $partial)
   (then (local.set $cc (i32.const {C2})))
   (else (local.set $cc (i32.or (i32.or
     (select (i32.const {C0}) (i32.const 0) (i32.wrap_i64 (i64.and (local.get $q) (i64.const 4))))
     (select (i32.const {C3}) (i32.const 0) (i32.wrap_i64 (i64.and (local.get $q) (i64.const 2)))))
     (select (i32.const {C1}) (i32.const 0) (i32.wrap_i64 (i64.and (local.get $q) (i64.const 1))))))))
  (i32.store16 $c (i32.const {_SW}) (i32.or (i32.and (i32.load16_u $c (i32.const {_SW})) (i32.const {0xFFFF ^ (C0 | C1 | C2 | C3)}))
                                         (local.get $cc))))
 ;; ---- scale / extract -----------------------------------------------------------------------------
 (func $x87_fscale
  (local $am i64) (local $ase i32) (local $bm i64) (local $bse i32) (local $ca i32) (local $cb i32) (local $n i64) (local $e i32)
  (local.set $am (call $x87_m (i32.const 0))) (local.set $ase (call $x87_sei (i32.const 0)))
  (local.set $bm (call $x87_m (i32.const 1))) (local.set $bse (call $x87_sei (i32.const 1)))
  (local.set $ca (call $x87_cls (local.get $am) (local.get $ase)))
  (local.set $cb (call $x87_cls (local.get $bm) (local.get $bse)))
  (call $x87_c1 (i32.const 0))
  (if (i32.or (i32.ge_u (local.get $ca) (i32.const 3)) (i32.ge_u (local.get $cb) (i32.const 3))) (then
    (local.set $am (call $x87_nan2 (local.get $am) (local.get $ase) (local.get $bm) (local.get $bse)))
    (call $x87_put (i32.const 0) (local.get $am) (global.get $x87_se))
    (return)))
  (call $x87_de2 (local.get $am) (local.get $ase) (local.get $bm) (local.get $bse))
  (if (i32.eq (local.get $cb) (i32.const 2)) (then
    (if (i32.or (i32.and (i32.eqz (local.get $ca)) (i32.eqz (i32.shr_u (local.get $bse) (i32.const 15))))
                (i32.and (i32.eq (local.get $ca) (i32.const 2)) (i32.shr_u (local.get $bse) (i32.const 15)))) (then
      (call $x87_put (i32.const 0) (call $x87_dnan) (global.get $x87_se)) (return)))
    (if (i32.eq (local.get $ca) (i32.const 1)) (then
      (call $x87_put (i32.const 0)
        (select (i64.const 0) (i64.const {_INT_BIT}) (i32.shr_u (local.get $bse) (i32.const 15)))
        (i32.or (i32.and (local.get $ase) (i32.const 0x8000))
                (select (i32.const 0) (i32.const 0x7fff) (i32.shr_u (local.get $bse) (i32.const 15)))))))
    (return)))
  (if (i32.ne (local.get $ca) (i32.const 1)) (then (return)))
  ;; n = trunc(st1), clamped
  (local.set $n (i64.const 0))
  (if (i32.eq (local.get $cb) (i32.const 1)) (then
    (local.set $bm (call $x87_norm (local.get $bm) (local.get $bse)))
    (local.set $e (i32.sub (global.get $x87_e) (i32.const 16383)))
    (if (i32.ge_s (local.get $e) (i32.const 20))
     (then (local.set $n (i64.const 0x100000)))
     (else (if (i32.ge_s (local.get $e) (i32.const 0))
      (then (local.set $n (i64.shr_u (local.get $bm) (i64.extend_i32_u (i32.sub (i32.const 63) (local.get $e)))))))))
    (if (i32.shr_u (local.get $bse) (i32.const 15)) (then (local.set $n (i64.sub (i64.const 0) (local.get $n)))))))
  (local.set $am (call $x87_norm (local.get $am) (local.get $ase)))
  (local.set $am (call $x87_packp (i32.shr_u (local.get $ase) (i32.const 15))
                               (i32.add (global.get $x87_e) (i32.wrap_i64 (local.get $n))) (local.get $am) (i64.const 0) (i32.const 64)))
  (call $x87_put (i32.const 0) (local.get $am) (global.get $x87_se)))
 (func $x87_fxtract
  (local $m i64) (local $se i32) (local $cl i32) (local $em i64) (local $ese i32)
  (local.set $m (call $x87_m (i32.const 0))) (local.set $se (call $x87_sei (i32.const 0)))
  (local.set $cl (call $x87_cls (local.get $m) (local.get $se)))
  (call $x87_c1 (i32.const 0))
  (if (i32.ge_u (local.get $cl) (i32.const 3)) (then
    (local.set $m (call $x87_nan2 (local.get $m) (local.get $se) (local.get $m) (local.get $se)))
    (local.set $se (global.get $x87_se))
    (call $x87_put (i32.const 0) (local.get $m) (local.get $se))
    (call $x87_push (local.get $m) (local.get $se))
    (return)))
  (if (i32.eqz (local.get $cl)) (then
    (call $x87_flag (i32.const {ZE}))
    (call $x87_put (i32.const 0) (i64.const {_INT_BIT}) (i32.const 0xffff))
    (call $x87_push (local.get $m) (local.get $se))
    (return)))
  (if (i32.eq (local.get $cl) (i32.const 2)) (then
    (call $x87_put (i32.const 0) (i64.const {_INT_BIT}) (i32.const 0x7fff))
    (call $x87_push (local.get $m) (local.get $se))
    (return)))
  (local.set $m (call $x87_norm (local.get $m) (local.get $se)))
  (local.set $em (call $x87_from_int (i64.extend_i32_s (i32.sub (global.get $x87_e) (i32.const 16383)))))
  (local.set $ese (global.get $x87_se))
  (call $x87_put (i32.const 0) (local.get $em) (local.get $ese))
  (call $x87_push (local.get $m) (i32.or (i32.and (local.get $se) (i32.const 0x8000)) (i32.const 16383))))
 ;; ---- environment -----------------------------------------------------------------------------------
 (func $x87_tagword (result i32)
  (local $p i32) (local $tw i32) (local $t i32) (local $a i32) (local $cl i32) (local $se i32)
  (loop $l
   (local.set $a (i32.add (i32.const {_ST0}) (i32.shl (local.get $p) (i32.const 4))))
   (if (i32.eqz (i32.and (i32.shr_u (i32.load16_u $c (i32.const {_TAG})) (local.get $p)) (i32.const 1)))
    (then (local.set $t (i32.const 3)))
    (else
     (local.set $se (i32.load16_u $c offset=8 (local.get $a)))
     (local.set $cl (call $x87_cls (i64.load $c (local.get $a)) (local.get $se)))
     (local.set $t (select (i32.const 1) (select (i32.const 0) (i32.const 2)
                     (i32.and (i32.eq (local.get $cl) (i32.const 1)) (i32.ne (i32.and (local.get $se) (i32.const 0x7fff)) (i32.const 0))))
                   (i32.eqz (local.get $cl))))))
   (local.set $tw (i32.or (local.get $tw) (i32.shl (local.get $t) (i32.shl (local.get $p) (i32.const 1)))))
   (local.set $p (i32.add (local.get $p) (i32.const 1)))
   (br_if $l (i32.lt_u (local.get $p) (i32.const 8))))
  (local.get $tw))
 ;; fnstenv, 28-byte protected-mode format; instruction and operand pointers are stored as 0
 (func $x87_fnstenv (param $a i32)
  (i32.store $g (local.get $a) (i32.or (i32.load16_u $c (i32.const {_CW})) (i32.const 0xffff0000)))
  (i32.store $g offset=4 (local.get $a) (i32.or (i32.wrap_i64 (call $x87_sw)) (i32.const 0xffff0000)))
  (i32.store $g offset=8 (local.get $a) (i32.or (call $x87_tagword) (i32.const 0xffff0000)))
  (i64.store $g offset=12 (local.get $a) (i64.const 0))
  (i64.store $g offset=20 (local.get $a) (i64.const 0xffff000000000000))
  (i32.store16 $c (i32.const {_CW}) (i32.or (i32.load16_u $c (i32.const {_CW})) (i32.const 0x3f))))
 (func $x87_fldenv (param $a i32)
  (local $tw i32) (local $p i32) (local $tag i32) (local $sw i32)
  (call $x87_fldcw (i32.load16_u $g (local.get $a)))
  (local.set $sw (i32.load16_u $g offset=4 (local.get $a)))
  (i32.store16 $c (i32.const {_SW}) (i32.and (local.get $sw) (i32.const 0xc7ff)))
  (i32.store16 $c (i32.const {_TOP}) (i32.and (i32.shr_u (local.get $sw) (i32.const 11)) (i32.const 7)))
  (local.set $tw (i32.load16_u $g offset=8 (local.get $a)))
  (loop $l
   (if (i32.ne (i32.and (i32.shr_u (local.get $tw) (i32.shl (local.get $p) (i32.const 1))) (i32.const 3)) (i32.const 3))
    (then (local.set $tag (i32.or (local.get $tag) (i32.shl (i32.const 1) (local.get $p))))))
   (local.set $p (i32.add (local.get $p) (i32.const 1)))
   (br_if $l (i32.lt_u (local.get $p) (i32.const 8))))
  (i32.store16 $c (i32.const {_TAG}) (local.get $tag)))
 (func $x87_fnsave (param $a i32)
  (local $i i32) (local $d i32)
  (call $x87_fnstenv (local.get $a))
  (loop $l
   (local.set $d (i32.add (local.get $a) (i32.add (i32.const 28) (i32.mul (local.get $i) (i32.const 10)))))
   (i64.store $g (local.get $d) (call $x87_m (local.get $i)))
   (i32.store16 $g offset=8 (local.get $d) (call $x87_sei (local.get $i)))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br_if $l (i32.lt_u (local.get $i) (i32.const 8))))
  (call $x87_fninit))
 (func $x87_frstor (param $a i32)
  (local $i i32) (local $d i32) (local $p i32) (local $tag i32)
  (call $x87_fldenv (local.get $a))
  (local.set $tag (i32.load16_u $c (i32.const {_TAG})))
  (loop $l
   (local.set $d (i32.add (local.get $a) (i32.add (i32.const 28) (i32.mul (local.get $i) (i32.const 10)))))
   (local.set $p (call $x87_slot (local.get $i)))
   (i64.store $c (local.get $p) (i64.load $g (local.get $d)))
   (i64.store $c offset=8 (local.get $p) (i64.load16_u $g offset=8 (local.get $d)))
   (local.set $i (i32.add (local.get $i) (i32.const 1)))
   (br_if $l (i32.lt_u (local.get $i) (i32.const 8))))
  (i32.store16 $c (i32.const {_TAG}) (local.get $tag)))
"""
