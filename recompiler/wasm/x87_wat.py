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
``runtime_wat``. The soft-float arithmetic and conversions are in
``x87_float_wat``.
"""
from __future__ import annotations

from formats.abi import CPU_STATE, CPU_STATE_OFFSETS

from .x87_float_wat import DE, IE, INT_BIT, ZE, x87_float_wat

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

# status word condition bits
C0, C1, C2, C3 = 0x100, 0x200, 0x400, 0x4000


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
""" + x87_float_wat() + f"""\
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
        (select (i64.const 0) (i64.const {INT_BIT}) (i32.shr_u (local.get $bse) (i32.const 15)))
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
    (call $x87_put (i32.const 0) (i64.const {INT_BIT}) (i32.const 0xffff))
    (call $x87_push (local.get $m) (local.get $se))
    (return)))
  (if (i32.eq (local.get $cl) (i32.const 2)) (then
    (call $x87_put (i32.const 0) (i64.const {INT_BIT}) (i32.const 0x7fff))
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
