//! Multiplication, division and modulo (§4.1): groups divmul32 (`ALU`) and divmul64 (`ALU64`).
//! The unsigned forms are in the original set; the signed ones (`SDIV`, `SMOD`: offset 1) need 6.6.
//!
//! The RFC's rules are the edge cases here: division by zero gives 0, modulo by zero leaves the
//! destination (the 32-bit forms zero its upper half), `LLONG_MIN / -1` is `LLONG_MIN` and
//! `LLONG_MIN % -1` is 0 (`INT_MIN` for `ALU`), signed results truncate toward zero
//! (`-13 % 3 == -1`), and `ALU64`'s unsigned immediate is sign-extended before it is read unsigned.
//! Each states its result literally (`Cell::literal`). A 32-bit divisor is its low half only: a
//! register whose low half is 0 divides by zero. One sub-case per form uses one register as both
//! operands.

use testkit::insn::{Alu, Reg::*};

use super::alu::{NEVER, Src, binary, name, same_register};
use super::model::{Width, Width::*};
use super::run::{self, Family, Group};

fn group(width: Width) -> Group {
    match width {
        W32 => Group::Divmul32,
        W64 => Group::Divmul64,
    }
}

const MIN64: u64 = i64::MIN as u64;
const MAX64: u64 = i64::MAX as u64;
/// `INT_MIN` in the low half, garbage above it.
const MIN32: u64 = 0xdead_beef_8000_0000;

/// A register operand with the RFC's literal result, if it states one.
type RegCase = (u64, u64, Option<u64>);
/// An immediate operand with the RFC's literal result, if it states one.
type ImmCase = (u64, i32, Option<u64>);

/// One register as both operands, with the result worked out by hand.
type SameCase = (u64, Option<u64>);

/// The operands of `op` in `width`: register cases, immediate cases, and one register as both
/// operands.
fn operands(op: Alu, width: Width) -> (Vec<RegCase>, Vec<ImmCase>, Vec<SameCase>) {
    let neg = |v: i64| v as u64;
    match (op, width) {
        (Alu::Mul, W64) => (
            vec![
                (MAX64, 2, None),
                (u64::MAX, u64::MAX, Some(1)),
                (MIN64, u64::MAX, Some(MIN64)),
                (0x1_0000_0001, 0xffff_ffff, None),
                (0, 0x1234, Some(0)),
            ],
            vec![
                (7, -3, Some(neg(-21))),
                (0x1_0000_0000, i32::MIN, None),
                (MAX64, 1, Some(MAX64)),
            ],
            vec![(0xffff_ffff, None)],
        ),
        (Alu::Mul, W32) => (
            vec![
                (0xdead_beef_ffff_ffff, 0x1234_5678_ffff_ffff, Some(1)),
                (0x1_0001_0000, 0xffff_0000_0001_0000, Some(0)),
                (
                    0xaaaa_aaaa_0000_0007,
                    0xbbbb_bbbb_ffff_fffd,
                    Some(0xffff_ffeb),
                ),
            ],
            vec![
                (0xffff_ffff_0000_0007, -3, Some(0xffff_ffeb)),
                (0x1234_5678_0001_0000, 0x10000, Some(0)),
            ],
            vec![(0xdead_beef_0001_0001, None)],
        ),
        (Alu::Div, W64) => (
            vec![
                (7, 2, Some(3)),
                // "If BPF program execution would result in division by zero, the destination
                // register is instead set to zero."
                (0x0123_4567_89ab_cdef, 0, Some(0)),
                (0, 0, Some(0)),
                (MIN64, MAX64, Some(1)),
                (u64::MAX, 0xffff_ffff, Some(0x1_0000_0001)),
            ],
            vec![
                (100, 7, Some(14)),
                // The immediate -1 sign-extended and read unsigned: u64::MAX.
                (u64::MAX, -1, Some(1)),
                (MAX64, -1, Some(0)),
                (0x8000_0000_0000_0000, i32::MIN, Some(0)),
            ],
            vec![(0, Some(0)), (0x1234, Some(1))],
        ),
        (Alu::Div, W32) => (
            vec![
                (0xdead_beef_0000_0007, 0x1234_0000_0000_0002, Some(3)),
                // Division by a register whose low half is zero.
                (0xdead_beef_1234_5678, 0xffff_ffff_0000_0000, Some(0)),
                (0xffff_ffff_ffff_ffff, 0x0000_0001_ffff_ffff, Some(1)),
            ],
            vec![
                (0xaaaa_aaaa_ffff_ffff, -1, Some(1)),
                (0x1234_5678_0000_0064, 7, Some(14)),
            ],
            vec![(0xdead_beef_0000_0000, Some(0))],
        ),
        (Alu::Sdiv, W64) => (
            vec![
                // Truncation toward zero.
                (neg(-7), 2, Some(neg(-3))),
                (7, neg(-2), Some(neg(-3))),
                (neg(-7), neg(-2), Some(3)),
                // "if execution would result in LLONG_MIN divided by -1, the destination register
                // is instead set to LLONG_MIN"
                (MIN64, u64::MAX, Some(MIN64)),
                (0x0123_4567_89ab_cdef, 0, Some(0)),
                (MAX64, u64::MAX, Some(neg(-i64::MAX))),
            ],
            vec![
                (MIN64, -1, Some(MIN64)),
                (neg(-100), 7, Some(neg(-14))),
                (100, -7, Some(neg(-14))),
                (MIN64, i32::MIN, Some(1 << 32)),
            ],
            vec![(MIN64, Some(1)), (0, Some(0))],
        ),
        (Alu::Sdiv, W32) => (
            vec![
                // "For ALU, if execution would result in INT_MIN divided by -1, the destination
                // register is instead set to INT_MIN."
                (MIN32, 0x0000_0001_ffff_ffff, Some(0x8000_0000)),
                (0xdead_beef_ffff_fff9, 2, Some(0xffff_fffd)),
                (0xdead_beef_0000_0007, 0xffff_ffff_0000_0000, Some(0)),
                (0x1234_5678_ffff_fff9, 0xffff_ffff_ffff_fffe, Some(3)),
            ],
            vec![
                (MIN32, -1, Some(0x8000_0000)),
                (0xffff_ffff_ffff_ff9c, 7, Some(0xffff_fff2)),
            ],
            vec![(0x1234_5678_8000_0000, Some(1))],
        ),
        (Alu::Mod, W64) => (
            vec![
                (7, 2, Some(1)),
                // "If execution would result in modulo by zero, for ALU64 the value of the
                // destination register is unchanged"
                (0x0123_4567_89ab_cdef, 0, Some(0x0123_4567_89ab_cdef)),
                (u64::MAX, MAX64, Some(1)),
                (5, 7, Some(5)),
            ],
            vec![
                (7, -1, Some(7)),
                (100, 7, Some(2)),
                (u64::MAX, i32::MIN, Some(0x7fff_ffff)),
            ],
            vec![(0, Some(0)), (0x1234, Some(0))],
        ),
        (Alu::Mod, W32) => (
            vec![
                (0xdead_beef_0000_0007, 0x1234_0000_0000_0002, Some(1)),
                // "… whereas for ALU the upper 32 bits of the destination register are zeroed."
                (
                    0xdead_beef_1234_5678,
                    0xffff_ffff_0000_0000,
                    Some(0x1234_5678),
                ),
                (
                    0xffff_ffff_ffff_ffff,
                    0x0000_0001_8000_0000,
                    Some(0x7fff_ffff),
                ),
            ],
            vec![
                (0xaaaa_aaaa_0000_0064, 7, Some(2)),
                (0x1111_1111_ffff_fffe, -1, Some(0xffff_fffe)),
            ],
            vec![(0xdead_beef_0000_0000, Some(0))],
        ),
        (Alu::Smod, W64) => (
            vec![
                // "This specification requires that signed modulo MUST use truncated division
                // (where -13 % 3 == -1)"
                (neg(-13), 3, Some(neg(-1))),
                (13, neg(-3), Some(1)),
                (neg(-13), neg(-3), Some(neg(-1))),
                // "if execution would result in LLONG_MIN modulo -1, the destination register is
                // instead set to 0"
                (MIN64, u64::MAX, Some(0)),
                (0x0123_4567_89ab_cdef, 0, Some(0x0123_4567_89ab_cdef)),
            ],
            vec![
                (MIN64, -1, Some(0)),
                (neg(-13), 3, Some(neg(-1))),
                (MAX64, i32::MIN, Some(0x7fff_ffff)),
            ],
            vec![(MIN64, Some(0)), (0, Some(0))],
        ),
        (Alu::Smod, W32) => (
            vec![
                (0xdead_beef_ffff_fff3, 3, Some(0xffff_ffff)),
                // "For ALU, if execution would result in INT_MIN modulo -1, the destination
                // register is instead set to 0."
                (MIN32, 0x0000_0001_ffff_ffff, Some(0)),
                (
                    0xdead_beef_ffff_fff3,
                    0xffff_ffff_0000_0000,
                    Some(0xffff_fff3),
                ),
                (0x1234_5678_0000_000d, 0xffff_ffff_ffff_fffd, Some(1)),
            ],
            vec![
                (MIN32, -1, Some(0)),
                (0xffff_ffff_ffff_fff3, 3, Some(0xffff_ffff)),
            ],
            vec![(0x1234_5678_ffff_fff3, Some(0))],
        ),
        _ => unreachable!("not a division, multiplication or modulo: {op:?}"),
    }
}

fn family(op: Alu, width: Width) -> Family {
    let (feature, absent) = match op {
        // Offset 1 on a division was a reserved field before 6.6.
        Alu::Sdiv | Alu::Smod => ("insn.sdiv_smod", "BPF_ALU uses reserved fields"),
        _ => ("insn.ebpf", NEVER),
    };
    let mut family = Family::new(name(op, width), feature, absent);
    let (regs, imms, same) = operands(op, width);
    let mut turn = 0;
    for (dst, src, literal) in regs {
        family.subs.push(binary(
            op,
            width,
            group(width),
            turn,
            dst,
            Src::Reg(src),
            literal,
        ));
        turn += 1;
    }
    for (dst, imm, literal) in imms {
        family.subs.push(binary(
            op,
            width,
            group(width),
            turn,
            dst,
            Src::Imm(imm),
            literal,
        ));
        turn += 1;
    }
    for (i, (value, literal)) in same.into_iter().enumerate() {
        let reg = [R3, R0, R4][i % 3];
        family
            .subs
            .push(same_register(op, width, group(width), reg, value, literal));
    }
    family
}

#[test]
fn divmul_mul() {
    run::run(run::both(
        "MUL (ALU, ALU64)",
        family(Alu::Mul, W32),
        family(Alu::Mul, W64),
    ));
}

#[test]
fn divmul_div() {
    run::run(run::both(
        "DIV (ALU, ALU64)",
        family(Alu::Div, W32),
        family(Alu::Div, W64),
    ));
}

#[test]
fn divmul_sdiv() {
    run::run(run::both(
        "SDIV (ALU, ALU64)",
        family(Alu::Sdiv, W32),
        family(Alu::Sdiv, W64),
    ));
}

#[test]
fn divmul_mod() {
    run::run(run::both(
        "MOD (ALU, ALU64)",
        family(Alu::Mod, W32),
        family(Alu::Mod, W64),
    ));
}

#[test]
fn divmul_smod() {
    run::run(run::both(
        "SMOD (ALU, ALU64)",
        family(Alu::Smod, W32),
        family(Alu::Smod, W64),
    ));
}
