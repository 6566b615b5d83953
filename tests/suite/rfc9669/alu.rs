//! Arithmetic (§4.1) but multiplication, division and modulo, and the byte swaps (§4.2): groups
//! base32 (`ALU`, byte swaps of 16 and 32 bits) and base64 (`ALU64`, swaps of 64 bits).
//!
//! Each sub-case loads `dst` (and `src`) from its cells, runs the instruction, and stores `dst`,
//! `src` and the registers it does not name (`R0`, `R3`, `R4`, holding canaries: the x86-64 JIT
//! maps them to rax, rdx and rcx, which its shifts and divisions use) back. The 32-bit forms get
//! operands whose upper halves are not zero, so that a result not zero-extended, or an upper half
//! read, shows.
//!
//! Longer than the suite's ~600 lines on purpose: one idea (the families of §4.1-§4.2, each built
//! from the same operand tables and bystander checks); split by operation it would scatter them.

use testkit::insn::{Alu, Asm, End, Reg, Reg::*, Size};

use super::model::{self, Width, Width::*};
use super::run::{self, Cell, Family, Group, Sub};

/// The (`dst`, `src`) registers the sub-cases take in turn.
pub const PAIRS: [(Reg, Reg); 10] = [
    (R1, R2),
    (R0, R3),
    (R3, R0),
    (R4, R1),
    (R2, R4),
    (R5, R0),
    (R6, R7),
    (R7, R8),
    (R8, R3),
    (R0, R4),
];

/// Registers whose value an arithmetic instruction must leave alone when it does not name them.
const BYSTANDERS: [Reg; 3] = [R0, R3, R4];

fn canary(reg: Reg) -> u64 {
    0xb1b1_0000_0000_5ee5 | (reg as u64) << 32
}

/// The group of `ALU`/`ALU64` arithmetic.
pub fn base(width: Width) -> Group {
    match width {
        W32 => Group::Base32,
        W64 => Group::Base64,
    }
}

/// The source operand.
#[derive(Clone, Copy, Debug)]
pub enum Src {
    Imm(i32),
    Reg(u64),
}

fn symbol(op: Alu) -> &'static str {
    match op {
        Alu::Add => "+",
        Alu::Sub => "-",
        Alu::Mul => "*",
        Alu::Div => "/",
        Alu::Sdiv => "s/",
        Alu::Or => "|",
        Alu::And => "&",
        Alu::Lsh => "<<",
        Alu::Rsh => ">>",
        Alu::Neg => "neg",
        Alu::Mod => "%",
        Alu::Smod => "s%",
        Alu::Xor => "^",
        Alu::Mov => "=",
        Alu::Arsh => "s>>",
    }
}

/// The instruction `dst op= src` of `width`.
fn insn(op: Alu, width: Width, dst: Reg, src: Reg, operand: Src) -> Asm {
    match (width, operand) {
        (W64, Src::Imm(imm)) => Asm::new().alu64_imm(op, dst, imm),
        (W64, Src::Reg(_)) => Asm::new().alu64_reg(op, dst, src),
        (W32, Src::Imm(imm)) => Asm::new().alu32_imm(op, dst, imm),
        (W32, Src::Reg(_)) => Asm::new().alu32_reg(op, dst, src),
    }
}

/// `dst op= src` with `dst` and `src` in the registers of turn `turn`, checked against the model;
/// `literal` is what the RFC states for the result, when it does.
pub fn binary(
    op: Alu,
    width: Width,
    group: Group,
    turn: usize,
    dst: u64,
    src: Src,
    literal: Option<u64>,
) -> Sub {
    let (rd, rs) = PAIRS[turn % PAIRS.len()];
    let value = match src {
        Src::Imm(imm) => model::imm(imm),
        Src::Reg(v) => v,
    };
    let expected = model::alu(op, width, dst, value);
    let name = match src {
        Src::Imm(imm) => format!("{} {} {imm} (K)", run::hex(dst), symbol(op)),
        Src::Reg(v) => format!("{} {} {} (X)", run::hex(dst), symbol(op), run::hex(v)),
    };
    let is_reg = matches!(src, Src::Reg(_));
    let bystanders: Vec<Reg> = BYSTANDERS
        .into_iter()
        .filter(|&b| b != rd && !(is_reg && b == rs))
        .collect();
    let mut cells = vec![Cell::operand("dst", dst)];
    if is_reg {
        cells.push(Cell::operand("src", value));
    }
    let mut result = Cell::result("dst_after", expected);
    if let Some(literal) = literal {
        result = result.literal(literal);
    }
    cells.push(result);
    if is_reg {
        cells.push(Cell::result("src_after", value));
    }
    for &b in &bystanders {
        cells.push(Cell::result(bystander_name(b), canary(b)));
    }
    let code = insn(op, width, rd, rs, src);
    Sub {
        name,
        group,
        section: "4.1",
        insn: code.insns()[0],
        cells,
        emit: Box::new(move |at| {
            let mut c = 0..;
            let mut next = || at.cell(c.next().expect("cells"));
            let mut asm = Asm::new().ldx(Size::DW, rd, R9, next());
            if is_reg {
                asm = asm.ldx(Size::DW, rs, R9, next());
            }
            for &b in &bystanders {
                asm = asm.ld_imm64(b, canary(b));
            }
            asm = asm.append(&code).stx(Size::DW, R9, next(), rd);
            if is_reg {
                asm = asm.stx(Size::DW, R9, next(), rs);
            }
            for &b in &bystanders {
                asm = asm.stx(Size::DW, R9, next(), b);
            }
            asm
        }),
    }
}

fn bystander_name(reg: Reg) -> &'static str {
    match reg {
        R0 => "r0_after",
        R3 => "r3_after",
        _ => "r4_after",
    }
}

/// `dst op= dst`: one register as both operands.
pub fn same_register(
    op: Alu,
    width: Width,
    group: Group,
    reg: Reg,
    value: u64,
    literal: Option<u64>,
) -> Sub {
    let expected = model::alu(op, width, value, value);
    let code = match width {
        W64 => Asm::new().alu64_reg(op, reg, reg),
        W32 => Asm::new().alu32_reg(op, reg, reg),
    };
    let mut result = Cell::result("dst_after", expected);
    if let Some(literal) = literal {
        result = result.literal(literal);
    }
    Sub {
        name: format!(
            "r{0} {1} r{0} with r{0} = {2} (X, one register)",
            reg as u8,
            symbol(op),
            run::hex(value)
        ),
        group,
        section: "4.1",
        insn: code.insns()[0],
        cells: vec![Cell::operand("dst", value), result],
        emit: Box::new(move |at| {
            Asm::new()
                .ldx(Size::DW, reg, R9, at.cell(0))
                .append(&code)
                .stx(Size::DW, R9, at.cell(1), reg)
        }),
    }
}

/// A move or byte swap of `value`, loaded into `src` (`dst` holds garbage first): `expected` in
/// `dst` after it, `src` unchanged; `literal` is what the RFC states for the result, when it does.
struct Unary {
    name: String,
    group: Group,
    section: &'static str,
    code: Asm,
    regs: (Reg, Reg),
    value: u64,
    expected: u64,
    literal: Option<u64>,
}

fn unary(u: Unary) -> Sub {
    let Unary {
        name,
        group,
        section,
        code,
        regs: (rd, rs),
        value,
        expected,
        literal,
    } = u;
    let mut result = Cell::result("dst_after", expected);
    if let Some(literal) = literal {
        result = result.literal(literal);
    }
    Sub {
        name,
        group,
        section,
        insn: code.insns()[0],
        cells: vec![
            Cell::operand("src", value),
            Cell::operand("dst", 0xdead_beef_dead_beef),
            result,
            Cell::result("src_after", value),
        ],
        emit: Box::new(move |at| {
            Asm::new()
                .ldx(Size::DW, rs, R9, at.cell(0))
                .ldx(Size::DW, rd, R9, at.cell(1))
                .append(&code)
                .stx(Size::DW, R9, at.cell(2), rd)
                .stx(Size::DW, R9, at.cell(3), rs)
        }),
    }
}

/// Operand pairs: (`dst`, `src` register value) and (`dst`, immediate).
pub type Operands = (Vec<(u64, u64)>, Vec<(u64, i32)>);

/// Operands of the plain arithmetic: carries, wraps, sign bits, the 32-bit boundary, and for
/// `ALU` upper halves that must not matter.
fn operands(width: Width) -> Operands {
    match width {
        W64 => (
            vec![
                (u64::MAX, 1),
                (i64::MAX as u64, 1),
                (0, 1),
                (0xffff_ffff, 1),
                (i64::MIN as u64, i64::MIN as u64),
                (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
                (0xf0f0_f0f0_0f0f_0f0f, 0xff00_ff00_ff00_ff00),
            ],
            vec![
                (0x1_0000_0000, -1),
                (0, i32::MIN),
                (0x7fff_ffff_ffff_ffff, i32::MAX),
                (0xf0f0_f0f0_0f0f_0f0f, 0x0ff0_0ff0),
                (u64::MAX, 1),
            ],
        ),
        W32 => (
            vec![
                (0xdead_beef_ffff_ffff, 0x1234_5678_0000_0001),
                (0xaaaa_aaaa_7fff_ffff, 0x5555_5555_0000_0001),
                (0xffff_ffff_0000_0000, 0x0000_0001_0000_0001),
                (0x0000_0001_8000_0000, 0xffff_ffff_8000_0000),
                (0xcafe_0000_f0f0_0f0f, 0xbeef_0000_ff00_ff00),
            ],
            vec![
                (0xffff_ffff_0000_0001, -1),
                (0xdead_beef_0000_0000, i32::MIN),
                (0x1234_5678_7fff_ffff, 1),
                (0x0000_0001_f0f0_0f0f, 0x0ff0_0ff0),
            ],
        ),
    }
}

/// ADD, SUB, OR, AND, XOR in `width`: every operand pair, register and immediate source.
fn plain(op: Alu, width: Width) -> Family {
    let mut family = Family::new(name(op, width), "insn.ebpf", NEVER);
    let (regs, imms) = operands(width);
    for (i, (dst, src)) in regs.into_iter().enumerate() {
        family
            .subs
            .push(binary(op, width, base(width), i, dst, Src::Reg(src), None));
    }
    for (i, (dst, imm)) in imms.into_iter().enumerate() {
        family.subs.push(binary(
            op,
            width,
            base(width),
            i + 3,
            dst,
            Src::Imm(imm),
            None,
        ));
    }
    family
}

/// `ADD (ALU64)`.
pub fn name(op: Alu, width: Width) -> String {
    format!("{} ({})", format!("{op:?}").to_uppercase(), class(width))
}

/// The class's name.
pub fn class(width: Width) -> &'static str {
    match width {
        W32 => "ALU",
        W64 => "ALU64",
    }
}

/// The refusal that shows an instruction missing: none for the original set, whose every refusal
/// is a regression (its floor predates every kernel).
pub const NEVER: &str = "^$";

/// Shifts: amounts in registers past the width are masked (§4.1: "a mask of 0x3F (63) for
/// 64-bit operations and 0x1F (31) for 32-bit operations"); immediates in range (Linux refuses the
/// others at load: `refuse`).
fn shift(op: Alu, width: Width) -> Family {
    let mut family = Family::new(name(op, width), "insn.ebpf", NEVER);
    // Destinations, register amounts (with whether the masked amount is 0), immediates.
    type Shifts = (Vec<u64>, Vec<(u64, Option<u64>)>, Vec<i32>);
    let (values, amounts, imms): Shifts = match width {
        W64 => (
            vec![0x8000_0000_0000_0001, 0xf0f0_0000_0000_0f0f],
            vec![
                (0, None),
                (1, None),
                (63, None),
                // 64 & 63 == 0: unchanged.
                (64, Some(0)),
                (65, None),
                (127, None),
                (u64::MAX, None),
                (0x1_0000_0020, None),
            ],
            vec![0, 1, 31, 32, 63],
        ),
        W32 => (
            vec![0xdead_beef_8000_0001, 0x1234_5678_f0f0_0f0f],
            vec![
                (0, None),
                (1, None),
                (31, None),
                (32, Some(0)),
                (33, None),
                (0xffff_ffff, None),
                (0x1_0000_0004, None),
                (0xffff_ffff_0000_0010, None),
            ],
            vec![0, 1, 16, 31],
        ),
    };
    for (i, &(amount, unchanged)) in amounts.iter().enumerate() {
        let dst = values[i % values.len()];
        // A masked amount of 0 leaves the (32-bit: zero-extended) value as it was.
        let literal = unchanged.map(|_| model::truncate(dst, if width == W32 { 32 } else { 64 }));
        family.subs.push(binary(
            op,
            width,
            base(width),
            i,
            dst,
            Src::Reg(amount),
            literal,
        ));
    }
    for (i, &imm) in imms.iter().enumerate() {
        family.subs.push(binary(
            op,
            width,
            base(width),
            i + 4,
            values[i % values.len()],
            Src::Imm(imm),
            None,
        ));
    }
    family
}

fn neg(width: Width) -> Family {
    let mut family = Family::new(format!("NEG ({})", class(width)), "insn.ebpf", NEVER);
    let values: &[(u64, Option<u64>)] = match width {
        // -LLONG_MIN wraps to itself ("Underflow and overflow are allowed … the value will wrap").
        W64 => &[
            (0, Some(0)),
            (1, Some(u64::MAX)),
            (i64::MIN as u64, Some(i64::MIN as u64)),
            (i64::MAX as u64, None),
            (0x0123_4567_89ab_cdef, None),
        ],
        W32 => &[
            (0xdead_beef_0000_0001, Some(0xffff_ffff)),
            (0x1234_5678_8000_0000, Some(0x8000_0000)),
            (0xffff_ffff_0000_0000, Some(0)),
            (0x7fff_ffff, None),
        ],
    };
    for (i, &(value, literal)) in values.iter().enumerate() {
        family.subs.push(binary(
            Alu::Neg,
            width,
            base(width),
            i,
            value,
            Src::Imm(0),
            literal,
        ));
    }
    family
}

fn mov(width: Width) -> Family {
    let mut family = Family::new(format!("MOV ({})", class(width)), "insn.ebpf", NEVER);
    // The destination holds garbage first: the move must replace all of it.
    let garbage = 0xdead_beef_dead_beef;
    // Register and immediate sources, each with its result worked out by hand.
    type Moves = (&'static [(u64, Option<u64>)], &'static [(i32, Option<u64>)]);
    let (regs, imms): Moves = match width {
        // "{MOV, K, ALU64} means dst = (s64)imm"
        W64 => (
            &[(u64::MAX, None), (0x0123_4567_89ab_cdef, None)],
            &[
                (-1, Some(u64::MAX)),
                (i32::MIN, Some(0xffff_ffff_8000_0000)),
                (i32::MAX, Some(0x7fff_ffff)),
                (0, Some(0)),
            ],
        ),
        // "{MOV, X, ALU} means dst = (u32)src"
        W32 => (
            &[
                (0x1234_5678_9abc_def0, Some(0x9abc_def0)),
                (u64::MAX, Some(0xffff_ffff)),
            ],
            &[
                (-1, Some(0xffff_ffff)),
                (i32::MIN, Some(0x8000_0000)),
                (7, Some(7)),
            ],
        ),
    };
    for (i, &(src, literal)) in regs.iter().enumerate() {
        family.subs.push(binary(
            Alu::Mov,
            width,
            base(width),
            i,
            garbage,
            Src::Reg(src),
            literal,
        ));
    }
    for (i, &(imm, literal)) in imms.iter().enumerate() {
        family.subs.push(binary(
            Alu::Mov,
            width,
            base(width),
            i + 2,
            garbage,
            Src::Imm(imm),
            literal,
        ));
    }
    family
}

/// `MOVSX` (6.6+): `ALU64` from 8, 16 and 32 bits, `ALU` from 8 and 16.
fn movsx(width: Width) -> Family {
    let mut family = Family::new(
        format!("MOVSX ({})", class(width)),
        "insn.movsx",
        "BPF_MOV uses reserved fields",
    );
    let cases: &[(i16, u64, Option<u64>)] = match width {
        W64 => &[
            (8, 0x80, Some(0xffff_ffff_ffff_ff80)),
            (8, 0xffff_ffff_ffff_ff7f, Some(0x7f)),
            (16, 0x8000, Some(0xffff_ffff_ffff_8000)),
            (16, 0x1234_5678_9abc_7fff, Some(0x7fff)),
            (32, 0x8000_0000, Some(0xffff_ffff_8000_0000)),
            (32, 0xffff_ffff_7fff_ffff, Some(0x7fff_ffff)),
        ],
        // "{MOVSX, X, ALU} with 'offset' 8 means dst = (u32)(s32)(s8)src"
        W32 => &[
            (8, 0xdead_beef_0000_0080, Some(0xffff_ff80)),
            (8, 0xffff_ffff_ffff_ff01, Some(0x1)),
            (16, 0x1234_5678_0000_8001, Some(0xffff_8001)),
            (16, 0xffff_ffff_ffff_7ffe, Some(0x7ffe)),
        ],
    };
    for (i, &(bits, value, literal)) in cases.iter().enumerate() {
        let (rd, rs) = PAIRS[i % PAIRS.len()];
        let code = match width {
            W64 => Asm::new().movsx64(rd, rs, bits),
            W32 => Asm::new().movsx32(rd, rs, bits),
        };
        family.subs.push(unary(Unary {
            name: format!("(s{bits}){} ({})", run::hex(value), class(width)),
            group: base(width),
            section: "4.1",
            code,
            regs: (rd, rs),
            value,
            expected: model::movsx(width, bits as u32, value),
            literal,
        }));
    }
    family
}

/// Byte swaps (§4.2) of `kind`: widths 16 and 32 are base32, 64 is base64.
fn end(kind: End) -> Family {
    let (instruction, feature, absent) = match kind {
        End::ToLe => ("END TO_LE (ALU)", "insn.ebpf", NEVER),
        End::ToBe => ("END TO_BE (ALU)", "insn.ebpf", NEVER),
        End::Bswap => ("BSWAP (ALU64 END)", "insn.bswap", "unknown opcode d7"),
    };
    let mut family = Family::new(instruction, feature, absent);
    let values = [0x0123_4567_89ab_cdef_u64, 0xfedc_ba98_7654_3210];
    let mut turn = 0;
    for bits in [16, 32, 64] {
        for &value in &values {
            let (rd, rs) = PAIRS[turn % PAIRS.len()];
            turn += 1;
            let code = Asm::new().mov64_reg(rd, rs).end(kind, rd, bits);
            let group = if bits == 64 {
                Group::Base64
            } else {
                Group::Base32
            };
            let expected = model::end(kind, bits as u32, value);
            // The RFC's functions on a little-endian host: le is the identity on the low `bits`,
            // be and bswap reverse their bytes.
            let literal = match (kind, bits, value) {
                (End::ToLe, 16, 0x0123_4567_89ab_cdef) => Some(0xcdef),
                (End::ToBe | End::Bswap, 16, 0x0123_4567_89ab_cdef) => Some(0xefcd),
                (End::ToBe | End::Bswap, 32, 0xfedc_ba98_7654_3210) => Some(0x1032_5476),
                (End::ToBe | End::Bswap, 64, 0x0123_4567_89ab_cdef) => Some(0xefcd_ab89_6745_2301),
                _ => None,
            };
            let mut sub = unary(Unary {
                name: format!("{kind:?}{bits} {}", run::hex(value)),
                group,
                section: "4.2",
                code: code.clone(),
                regs: (rd, rs),
                value,
                expected,
                literal: literal.filter(|_| cfg!(target_endian = "little")),
            });
            sub.insn = code.insns()[1];
            family.subs.push(sub);
        }
    }
    family
}

/// `ADD (ALU, ALU64)`.
fn widths(op: &str) -> String {
    format!("{op} (ALU, ALU64)")
}

#[test]
fn alu_add() {
    run::run(run::both(
        &widths("ADD"),
        plain(Alu::Add, W32),
        plain(Alu::Add, W64),
    ));
}

#[test]
fn alu_sub() {
    run::run(run::both(
        &widths("SUB"),
        plain(Alu::Sub, W32),
        plain(Alu::Sub, W64),
    ));
}

#[test]
fn alu_or() {
    run::run(run::both(
        &widths("OR"),
        plain(Alu::Or, W32),
        plain(Alu::Or, W64),
    ));
}

#[test]
fn alu_and() {
    run::run(run::both(
        &widths("AND"),
        plain(Alu::And, W32),
        plain(Alu::And, W64),
    ));
}

#[test]
fn alu_xor() {
    run::run(run::both(
        &widths("XOR"),
        plain(Alu::Xor, W32),
        plain(Alu::Xor, W64),
    ));
}

#[test]
fn alu_lsh() {
    run::run(run::both(
        &widths("LSH"),
        shift(Alu::Lsh, W32),
        shift(Alu::Lsh, W64),
    ));
}

#[test]
fn alu_rsh() {
    run::run(run::both(
        &widths("RSH"),
        shift(Alu::Rsh, W32),
        shift(Alu::Rsh, W64),
    ));
}

#[test]
fn alu_arsh() {
    run::run(run::both(
        &widths("ARSH"),
        shift(Alu::Arsh, W32),
        shift(Alu::Arsh, W64),
    ));
}

#[test]
fn alu_neg() {
    run::run(run::both(&widths("NEG"), neg(W32), neg(W64)));
}

#[test]
fn alu_mov() {
    run::run(run::both(&widths("MOV"), mov(W32), mov(W64)));
}

#[test]
fn alu_movsx() {
    run::run(run::both(&widths("MOVSX"), movsx(W32), movsx(W64)));
}

#[test]
fn alu_end_to_le() {
    run::run(end(End::ToLe));
}

#[test]
fn alu_end_to_be() {
    run::run(end(End::ToBe));
}

#[test]
fn alu_bswap() {
    run::run(end(End::Bswap));
}
