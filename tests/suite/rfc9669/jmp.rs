//! Jumps (§4.3): the conditional jumps of `JMP` (base64) and `JMP32` (base32, 5.1+), `JA`, `gotol`
//! (`JA` in `JMP32` with the offset in `imm`, 6.6+) and program-local calls (base32).
//!
//! A conditional sub-case sets a flag register to 1 on the branch taken and to 2 on the one not
//! taken and stores it; half of them jump forward, half backward (to code before the jump), so both
//! directions of the offset are exercised. The operands are chosen where signed and unsigned
//! comparisons disagree, and for `JMP32` where the upper halves would change a 64-bit answer.

use testkit::insn::{Alu, Asm, Jmp, Reg, Reg::*, Size};

use super::alu::{NEVER, Operands, PAIRS};
use super::model::{self, Width, Width::*};
use super::run::{self, Cell, Family, Group, Sub};

/// The source operand: a register's value or an immediate.
#[derive(Clone, Copy)]
enum Src {
    Imm(i32),
    Reg(u64),
}

fn operands(width: Width) -> Operands {
    match width {
        W64 => (
            vec![
                (1, 2),
                (2, 1),
                (5, 5),
                // Unsigned: the largest; signed: -1.
                (u64::MAX, 1),
                (i64::MIN as u64, i64::MAX as u64),
                // Equal low halves, different values.
                (0xffff_ffff, 0x1_ffff_ffff),
                (0x8000_0000_0000_0001, 3),
            ],
            vec![
                // The immediate is sign-extended: -1 is all ones.
                (u64::MAX, -1),
                (0xffff_ffff, -1),
                (1, -1),
                (0x8000_0000, i32::MIN),
                (0, 0),
            ],
        ),
        W32 => (
            vec![
                (0xffff_ffff_0000_0001, 2),
                (0x0000_0001_0000_0005, 0xffff_ffff_0000_0005),
                (0x1234_5678_ffff_ffff, 1),
                (0x8000_0000, 0x7fff_ffff),
                (0x1_0000_0000, 0x1_0000_0000),
                (0xdead_0000_0000_0003, 0xbeef_0000_0000_0006),
            ],
            vec![
                (0xdead_beef_ffff_ffff, -1),
                (0x1_0000_0001, 1),
                (0x7fff_ffff, i32::MIN),
                (0xffff_ffff_0000_0000, 0),
            ],
        ),
    }
}

fn class(width: Width) -> &'static str {
    match width {
        W32 => "JMP32",
        W64 => "JMP",
    }
}

/// A flag register that is neither operand.
fn flag(dst: Reg, src: Reg) -> Reg {
    [R5, R6, R7, R8]
        .into_iter()
        .find(|r| *r != dst && *r != src)
        .expect("a free register")
}

fn cond(op: Jmp, width: Width, turn: usize, dst: u64, src: Src) -> Sub {
    let (rd, rs) = PAIRS[turn % PAIRS.len()];
    let rf = flag(rd, rs);
    let value = match src {
        Src::Imm(imm) => model::imm(imm),
        Src::Reg(v) => v,
    };
    let taken = model::jump(op, width, dst, value);
    let backward = turn % 2 == 1;
    let jump = move |off: i16| match (width, src) {
        (W64, Src::Imm(imm)) => Asm::new().jmp_imm(op, rd, imm, off),
        (W64, Src::Reg(_)) => Asm::new().jmp_reg(op, rd, rs, off),
        (W32, Src::Imm(imm)) => Asm::new().jmp32_imm(op, rd, imm, off),
        (W32, Src::Reg(_)) => Asm::new().jmp32_reg(op, rd, rs, off),
    };
    let is_reg = matches!(src, Src::Reg(_));
    let mut cells = vec![Cell::operand("dst", dst)];
    if is_reg {
        cells.push(Cell::operand("src", value));
    }
    cells.push(Cell::result("taken", if taken { 1 } else { 2 }));
    let name = format!(
        "{} {:?} {}{} ({}, {})",
        run::hex(dst),
        op,
        match src {
            Src::Imm(imm) => format!("{imm}"),
            Src::Reg(v) => run::hex(v),
        },
        if is_reg { " (X)" } else { " (K)" },
        class(width),
        if backward { "backward" } else { "forward" }
    );
    Sub {
        name,
        group: if width == W64 {
            Group::Base64
        } else {
            Group::Base32
        },
        section: "4.3",
        insn: jump(if backward { -3 } else { 2 }).insns()[0],
        cells,
        emit: Box::new(move |at| {
            let mut asm = Asm::new().ldx(Size::DW, rd, R9, at.cell(0));
            if is_reg {
                asm = asm.ldx(Size::DW, rs, R9, at.cell(1));
            }
            let out = at.cell(if is_reg { 2 } else { 1 });
            asm = asm.mov64_imm(rf, 0);
            let body = if backward {
                // ja T; B: flag |= 1; ja END; T: if … goto B; flag |= 2; END:
                Asm::new()
                    .ja(2)
                    .alu64_imm(Alu::Or, rf, 1)
                    .ja(2)
                    .append(&jump(-3))
                    .alu64_imm(Alu::Or, rf, 2)
            } else {
                // if … goto T; flag |= 2; ja END; T: flag |= 1; END:
                jump(2)
                    .alu64_imm(Alu::Or, rf, 2)
                    .ja(1)
                    .alu64_imm(Alu::Or, rf, 1)
            };
            asm.append(&body).stx(Size::DW, R9, out, rf)
        }),
    }
}

fn conditional(op: Jmp, width: Width) -> Family {
    let (feature, absent) = match (width, op) {
        (W32, _) => ("insn.jmp32", "unknown opcode"),
        (W64, Jmp::Jlt | Jmp::Jle | Jmp::Jslt | Jmp::Jsle) => ("insn.jmp_ext", "unknown opcode"),
        (W64, _) => ("insn.ebpf", NEVER),
    };
    let mut family = Family::new(
        format!("{} ({})", format!("{op:?}").to_uppercase(), class(width)),
        feature,
        absent,
    );
    let (regs, imms) = operands(width);
    let mut turn = 0;
    for (dst, src) in regs {
        family.subs.push(cond(op, width, turn, dst, Src::Reg(src)));
        turn += 1;
    }
    for (dst, imm) in imms {
        family.subs.push(cond(op, width, turn, dst, Src::Imm(imm)));
        turn += 1;
    }
    family
}

/// An unconditional jump of `off` slots: `ja` (`JMP`, the offset in `off`) or `gotol` (`JMP32`,
/// in `imm`).
fn goto(long: bool, off: i16) -> Asm {
    if long {
        Asm::new().gotol(off.into())
    } else {
        Asm::new().ja(off)
    }
}

/// A flag register's bits show which instructions ran (§4.3: "the offset … is in units of 64-bit
/// instructions relative to the instruction following the jump"). The slots a jump skips are
/// reached on another path (`if c == 0`, and `c` is 1): the verifier refuses unreachable code.
fn unconditional_sub(long: bool, name: &str, turn: usize, expected: u64) -> Sub {
    let (rf, rc) = [(R1, R2), (R5, R3), (R0, R4), (R8, R7)][turn % 4];
    let go = move |off| goto(long, off);
    let body = match turn {
        // goto +0 falls through.
        0 => go(0).alu64_imm(Alu::Or, rf, 1),
        1 => Asm::new()
            .jmp_imm(Jmp::Jeq, rc, 0, 1)
            .append(&go(1))
            .alu64_imm(Alu::Or, rf, 1)
            .alu64_imm(Alu::Or, rf, 2),
        // A wide instruction is two slots.
        2 => Asm::new()
            .jmp_imm(Jmp::Jeq, rc, 0, 1)
            .append(&go(2))
            .ld_imm64(rf, 0xbad)
            .alu64_imm(Alu::Or, rf, 4),
        // goto L2; L1: flag |= 2; goto END; L2: flag |= 1; goto L1 (backward); END:
        _ => go(2)
            .alu64_imm(Alu::Or, rf, 2)
            .append(&go(2))
            .alu64_imm(Alu::Or, rf, 1)
            .append(&go(-4)),
    };
    let insn = body.insns()[[0, 1, 1, 4][turn]];
    Sub {
        name: name.to_owned(),
        group: Group::Base32,
        section: "4.3",
        insn,
        cells: vec![Cell::operand("c", 1), Cell::result("flags", expected)],
        emit: Box::new(move |at| {
            Asm::new()
                .ldx(Size::DW, rc, R9, at.cell(0))
                .mov64_imm(rf, 0)
                .append(&body)
                .stx(Size::DW, R9, at.cell(1), rf)
        }),
    }
}

fn unconditional(long: bool) -> Family {
    let mut family = if long {
        Family::new("GOTOL (JMP32 JA)", "insn.gotol", "unknown opcode 06")
    } else {
        Family::new("JA (JMP)", "insn.ebpf", NEVER)
    };
    let what = if long { "gotol" } else { "ja" };
    for (turn, (name, expected)) in [
        (format!("{what} +0 falls through"), 1),
        (format!("{what} +1 skips one slot"), 2),
        (format!("{what} +2 skips an ld_imm64 (two slots)"), 4),
        (format!("{what} -4 jumps backward"), 3),
    ]
    .into_iter()
    .enumerate()
    {
        family
            .subs
            .push(unconditional_sub(long, &name, turn, expected));
    }
    if long {
        family.subs.push(far());
    }
    family
}

/// `ld_imm64`s a far `gotol` jumps over: more slots than a 16-bit offset reaches.
const FAR_LOADS: usize = 16_400;

/// `gotol` past 32,767 slots (what `ja` cannot reach): `if c == 0 goto L; gotol END; L: <32,800
/// slots of ld_imm64 flag = own slot>; END: store flag`. `c` is 1, so the flag stays 0 unless the
/// jump lands inside the block, where the marker names the slot it landed before.
fn far() -> Sub {
    let block = 2 * FAR_LOADS as i32;
    Sub {
        name: format!("gotol +{block} (past a 16-bit offset)"),
        group: Group::Base32,
        section: "4.3",
        insn: Asm::new().gotol(block).insns()[0],
        cells: vec![Cell::operand("c", 1), Cell::result("flags", 0).literal(0)],
        emit: Box::new(move |at| {
            let mut asm = Asm::new()
                .mov64_imm(R1, 0)
                .ldx(Size::DW, R2, R9, at.cell(0))
                .jmp_imm(Jmp::Jeq, R2, 0, 1)
                .gotol(block);
            for i in 0..FAR_LOADS {
                asm = asm.ld_imm64(R1, 0xf000_0000 | (2 * i) as u64);
            }
            asm.stx(Size::DW, R9, at.cell(1), R1)
        }),
    }
}

/// Program-local calls (§4.3.2): "referenced by offset from the instruction following the call
/// instruction … An EXIT within the program-local function will return to the caller." The tail
/// holds `A: r0 = 0x1234; exit` and `B: call A (a negative offset); r0 += 1; exit`.
fn call_local() -> Family {
    let mut family = Family::new(
        "CALL program-local (JMP)",
        "insn.call_local",
        "unknown opcode|BPF_CALL uses reserved fields",
    );
    family.tail = |_| {
        Asm::new()
            .mov64_imm(R0, 0x1234)
            .exit()
            .call_local(-3)
            .add64_imm(R0, 1)
            .exit()
    };
    // The call is the sub-case's second slot; A is at the tail, B two slots after it.
    for (name, target, expected) in [
        ("call +imm returns to the caller", 0, 0x1234),
        (
            "call +imm into a function that calls one before it",
            2,
            0x1235,
        ),
    ] {
        family.subs.push(Sub {
            name: name.to_owned(),
            group: Group::Base32,
            section: "4.3.2",
            insn: Asm::new().call_local(0).insns()[0],
            cells: vec![Cell::result("r0", expected)],
            emit: Box::new(move |at| {
                let call = at.slot + 1;
                let off = (at.tail + target) as i32 - (call as i32 + 1);
                Asm::new()
                    .mov64_imm(R0, 0)
                    .call_local(off)
                    .stx(Size::DW, R9, at.cell(0), R0)
            }),
        });
    }
    family
}

macro_rules! conditional_tests {
    ($($name:ident: $op:ident;)+) => {
        $(
            #[test]
            fn $name() {
                let name = format!("{} (JMP, JMP32)", stringify!($op).to_uppercase());
                run::run(run::both(&name, conditional(Jmp::$op, W64), conditional(Jmp::$op, W32)));
            }
        )+
    };
}

conditional_tests! {
    jmp_jeq: Jeq;
    jmp_jne: Jne;
    jmp_jset: Jset;
    jmp_jgt: Jgt;
    jmp_jge: Jge;
    jmp_jlt: Jlt;
    jmp_jle: Jle;
    jmp_jsgt: Jsgt;
    jmp_jsge: Jsge;
    jmp_jslt: Jslt;
    jmp_jsle: Jsle;
}

#[test]
fn jmp_ja() {
    run::run(unconditional(false));
}

#[test]
fn jmp32_gotol() {
    run::run(unconditional(true));
}

#[test]
fn jmp_call_local() {
    run::run(call_local());
}

/// What the program returns when the sub-case's `exit` ends it.
const EXITED: u32 = 0x0e1d;

#[test]
fn jmp_exit() {
    // EXIT (§4.3, "return"): every program here ends with one; this one returns early, and
    // nothing after it may run (a store behind it keeps its cell's poison, and the test run
    // returns the early R0). The path around it (c == 0) is for the verifier: no dead code.
    let mut family = Family::new("EXIT (JMP)", "insn.ebpf", NEVER);
    family.returns = EXITED;
    family.subs.push(Sub {
        name: "exit returns R0 and ends the program".to_owned(),
        group: Group::Base32,
        section: "4.3",
        insn: Asm::new().exit().insns()[0],
        cells: vec![
            Cell::operand("c", 1),
            Cell::result("before_exit", 1),
            Cell::result("after_exit", run::POISON),
        ],
        emit: Box::new(|at| {
            Asm::new()
                .mov64_imm(R1, 1)
                .stx(Size::DW, R9, at.cell(1), R1)
                .ldx(Size::DW, R2, R9, at.cell(0))
                .jmp_imm(Jmp::Jeq, R2, 0, 2)
                .mov64_imm(R0, EXITED as i32)
                .exit()
                .stx(Size::DW, R9, at.cell(2), R1)
        }),
    });
    run::run(family);
}
