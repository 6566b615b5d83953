//! Atomic operations (§5.3): groups atomic32 (`W`) and atomic64 (`DW`): add, or, and, xor with and
//! without `FETCH`, `XCHG` and `CMPXCHG` (success and failure). Atomic add alone is as old as eBPF
//! (`BPF_XADD`); the rest came in 5.12. And Linux's load-acquire and store-release (6.15+, not in
//! RFC 9669).
//!
//! The memory word is a cell of the map value, addressed through `R9` or through another register
//! pointed past it with a negative offset; the 32-bit forms work on either half of it, and the
//! other half must not change. The source register's value after the instruction is stored too:
//! the old value for the fetching forms, unchanged otherwise; `CMPXCHG` also `R0`. One sub-case of
//! each operation but `CMPXCHG` (which uses `R0` itself) takes its source in `R0`.

use testkit::insn::{Asm, Atomic, Reg, Reg::*, Size};

use super::model;
use super::run::{self, Cell, Family, Group, Sub};

/// How a kernel without the operation refuses it: 5.10 takes only immediate 0 (add) before the
/// verifier runs; 5.12–6.14 do not know load-acquire and store-release, nor atomic `B`/`H`.
const ABSENT: &str = "BPF_STX uses reserved fields|BPF_ATOMIC uses invalid atomic opcode|unknown opcode|invalid atomic operand size";

const MEMORY: [u64; 4] = [
    0xaaaa_aaaa_1234_5678,
    0x0000_0000_ffff_ffff,
    0x8000_0000_0000_0000,
    0xfedc_ba98_7654_3210,
];
const SOURCES: [u64; 4] = [
    0x1111_1111_0000_0001,
    0xffff_ffff_0000_0001,
    u64::MAX,
    0x0f0f_f0f0_0f0f_f0f0,
];

/// The (base, source) registers of each turn: turn 0 and 2 address through `R9`, 1 and 3 through
/// another register with a negative offset.
fn registers(op: Atomic, turn: usize) -> (Reg, Reg) {
    match turn % 4 {
        0 if op == Atomic::Cmpxchg => (R9, R2),
        0 => (R9, R0),
        1 => (R8, R3),
        2 => (R9, R1),
        _ => (R4, R5),
    }
}

fn one(op: Atomic, size: Size, turn: usize, mem: u64, src: u64, r0_matches: bool) -> Sub {
    let (base, rs) = registers(op, turn);
    // W alternates between the word's halves; DW takes all of it.
    let at = if size == Size::W && turn % 2 == 1 {
        4
    } else {
        0
    };
    let mut memory = mem.to_ne_bytes().to_vec();
    let current = model::load(size, &memory, at);
    let r0 = if r0_matches { current } else { current ^ 0x1 };
    let result = model::atomic(op, size, &mut memory, at, src, r0);
    let after = u64::from_ne_bytes(memory[..8].try_into().expect("8 bytes"));
    let cmpxchg = op == Atomic::Cmpxchg;
    let mut cells = vec![
        Cell::memory("memory", mem, after),
        Cell::operand("src", src),
        Cell::result("src_after", result.src),
    ];
    if cmpxchg {
        cells.push(Cell::operand("r0", r0));
        cells.push(Cell::result("r0_after", result.r0));
    }
    let off = if base == R9 { at as i16 } else { at as i16 - 8 };
    let code = Asm::new().atomic(size, op, base, off, rs);
    let name = format!(
        "{op:?} {} at byte {at}: memory {}, src {}{}",
        if size == Size::W { "W" } else { "DW" },
        run::hex(mem),
        run::hex(src),
        if cmpxchg {
            format!(
                ", r0 {} ({})",
                run::hex(r0),
                if r0_matches { "match" } else { "no match" }
            )
        } else {
            String::new()
        }
    );
    Sub {
        name,
        group: if size == Size::W {
            Group::Atomic32
        } else {
            Group::Atomic64
        },
        section: "5.3",
        insn: code.insns()[0],
        cells,
        emit: Box::new(move |a| {
            let mut asm = Asm::new().ldx(Size::DW, rs, R9, a.cell(1));
            if cmpxchg {
                asm = asm.ldx(Size::DW, R0, R9, a.cell(3));
            }
            let off = if base == R9 {
                a.cell(0) + at as i16
            } else {
                asm = asm
                    .mov64_reg(base, R9)
                    .add64_imm(base, i32::from(a.cell(0)) + 8);
                at as i16 - 8
            };
            asm = asm
                .atomic(size, op, base, off, rs)
                .stx(Size::DW, R9, a.cell(2), rs);
            if cmpxchg {
                asm = asm.stx(Size::DW, R9, a.cell(4), R0);
            }
            asm
        }),
    }
}

fn family(op: Atomic, size: Size) -> Family {
    let feature = match op {
        Atomic::Add => "insn.ebpf",
        Atomic::FetchAdd => "insn.atomic_fetch_add",
        Atomic::Xchg => "insn.atomic_xchg",
        Atomic::Cmpxchg => "insn.atomic_cmpxchg",
        _ => "insn.atomic_bitwise",
    };
    let mut family = Family::new(
        format!(
            "{} ({})",
            format!("{op:?}").to_uppercase(),
            if size == Size::W {
                "ATOMIC W"
            } else {
                "ATOMIC DW"
            }
        ),
        feature,
        if op == Atomic::Add {
            super::alu::NEVER
        } else {
            ABSENT
        },
    );
    for turn in 0..MEMORY.len() {
        // CMPXCHG: the first two compare equal, the others not.
        family
            .subs
            .push(one(op, size, turn, MEMORY[turn], SOURCES[turn], turn < 2));
    }
    if op == Atomic::Cmpxchg {
        // The RFC's words: on a match memory gets src; either way R0 gets the old value,
        // zero-extended.
        let mut sub = one(
            op,
            size,
            4,
            0x1234_5678_9abc_def0,
            0x0fed_cba9_8765_4321,
            true,
        );
        let (memory, r0) = match size {
            Size::W => (0x1234_5678_8765_4321, 0x9abc_def0),
            _ => (0x0fed_cba9_8765_4321, 0x1234_5678_9abc_def0),
        };
        sub.cells[0] = sub.cells[0].clone().literal(memory);
        sub.cells[4] = sub.cells[4].clone().literal(r0);
        family.subs.push(sub);
    }
    family
}

/// Load-acquire (`dst = *(size *)(src + off)`, zero-extended) or store-release
/// (`*(size *)(dst + off) = src`), Linux 6.15+: every size, naturally aligned.
fn acquire_release(store: bool) -> Family {
    let mut family = if store {
        Family::new("STORE_RELEASE (ATOMIC)", "insn.store_release", ABSENT)
    } else {
        Family::new("LOAD_ACQUIRE (ATOMIC)", "insn.load_acquire", ABSENT)
    };
    let word = 0x8877_6655_4433_2211_u64;
    let value = 0xfedc_ba98_7654_3210_u64;
    for (turn, (size, at)) in [(Size::B, 7), (Size::H, 6), (Size::W, 4), (Size::DW, 0)]
        .into_iter()
        .enumerate()
    {
        let (base, reg) = [(R9, R1), (R8, R0), (R9, R3), (R2, R4)][turn];
        let mut memory = word.to_ne_bytes().to_vec();
        let loaded = model::load(size, &memory, at);
        if store {
            model::store(size, &mut memory, at, value);
        }
        let after = u64::from_ne_bytes(memory[..8].try_into().expect("8 bytes"));
        let off = if base == R9 { at as i16 } else { at as i16 - 8 };
        let code = if store {
            Asm::new().store_release(size, base, off, reg)
        } else {
            Asm::new().load_acquire(size, reg, base, off)
        };
        let mut cells = vec![Cell::memory("memory", word, after)];
        if store {
            cells.push(Cell::operand("src", value));
            cells.push(Cell::result("src_after", value));
        } else {
            cells.push(Cell::result("dst_after", loaded));
        }
        family.subs.push(Sub {
            name: format!(
                "{} {} at byte {at}",
                if store {
                    "store_release"
                } else {
                    "load_acquire"
                },
                ["B", "H", "W", "DW"][turn]
            ),
            group: Group::LinuxAtomicLoadStore,
            section: "none (Linux 6.15+)",
            insn: code.insns()[0],
            cells,
            emit: Box::new(move |a| {
                let mut asm = Asm::new();
                if store {
                    asm = asm.ldx(Size::DW, reg, R9, a.cell(1));
                } else {
                    asm = asm.ld_imm64(reg, 0xdead_beef_dead_beef);
                }
                let off = if base == R9 {
                    a.cell(0) + at as i16
                } else {
                    asm = asm
                        .mov64_reg(base, R9)
                        .add64_imm(base, i32::from(a.cell(0)) + 8);
                    at as i16 - 8
                };
                if store {
                    asm.store_release(size, base, off, reg)
                        .stx(Size::DW, R9, a.cell(2), reg)
                } else {
                    asm.load_acquire(size, reg, base, off)
                        .stx(Size::DW, R9, a.cell(1), reg)
                }
            }),
        });
    }
    family
}

/// `ops` on 32 and 64 bits: an operation, and its fetching form where the two share a floor.
fn widths(name: &str, ops: &[Atomic]) -> Family {
    let mut w = family(ops[0], Size::W);
    let mut dw = family(ops[0], Size::DW);
    for &op in &ops[1..] {
        w.subs.extend(family(op, Size::W).subs);
        dw.subs.extend(family(op, Size::DW).subs);
    }
    run::both(name, w, dw)
}

#[test]
fn atomic_add() {
    run::run(widths("ADD (ATOMIC W, DW)", &[Atomic::Add]));
}

#[test]
fn atomic_fetch_add() {
    run::run(widths("ADD | FETCH (ATOMIC W, DW)", &[Atomic::FetchAdd]));
}

#[test]
fn atomic_or() {
    run::run(widths(
        "OR, OR | FETCH (ATOMIC W, DW)",
        &[Atomic::Or, Atomic::FetchOr],
    ));
}

#[test]
fn atomic_and() {
    run::run(widths(
        "AND, AND | FETCH (ATOMIC W, DW)",
        &[Atomic::And, Atomic::FetchAnd],
    ));
}

#[test]
fn atomic_xor() {
    run::run(widths(
        "XOR, XOR | FETCH (ATOMIC W, DW)",
        &[Atomic::Xor, Atomic::FetchXor],
    ));
}

#[test]
fn atomic_xchg() {
    run::run(widths("XCHG (ATOMIC W, DW)", &[Atomic::Xchg]));
}

#[test]
fn atomic_cmpxchg() {
    run::run(widths("CMPXCHG (ATOMIC W, DW)", &[Atomic::Cmpxchg]));
}

#[test]
fn atomic_load_acquire() {
    run::run(acquire_release(false));
}

#[test]
fn atomic_store_release() {
    run::run(acquire_release(true));
}
