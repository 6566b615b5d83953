//! Loads and stores (§5.1), sign-extending loads (§5.2, 6.6+) and 64-bit immediates (§5.4): base32,
//! and base64 for the `DW` size and `ld_imm64`.
//!
//! Each sub-case owns 16 bytes of memory (two cells) whose bytes have their high bits set in
//! places (`11 22 … 88 | 88 99 … ff` on a little-endian host), accessed at aligned and unaligned
//! offsets, across the two cells, and through a register pointing past them with a negative
//! offset. A load's destination holds garbage first (the load must replace all 64 bits); a store's
//! whole 16 bytes are checked after it (nothing beside the stored bytes may change).

use testkit::insn::{Asm, Reg, Reg::*, Size};

use super::alu::{NEVER, PAIRS};
use super::model;
use super::run::{self, Cell, Family, Group, Sub};

const MEMORY: [u64; 2] = [0x8877_6655_4433_2211, 0xffee_ddcc_bbaa_9988];
const GARBAGE: u64 = 0xdead_beef_dead_beef;

fn group(size: Size) -> Group {
    if size == Size::DW {
        Group::Base64
    } else {
        Group::Base32
    }
}

fn bytes_of(cells: [u64; 2]) -> Vec<u8> {
    cells.iter().flat_map(|c| c.to_ne_bytes()).collect()
}

fn cells_of(bytes: &[u8]) -> [u64; 2] {
    [
        u64::from_ne_bytes(bytes[..8].try_into().expect("8 bytes")),
        u64::from_ne_bytes(bytes[8..16].try_into().expect("8 bytes")),
    ]
}

/// The address of byte `at` of the sub-case's memory as (base register, offset): `R9` and the
/// cell's offset, or (`negative`) `base` pointed past the 16 bytes and a negative offset.
fn address(negative: bool, base: Reg, cell: i16, at: usize) -> (Asm, Reg, i16) {
    if negative {
        let setup = Asm::new()
            .mov64_reg(base, R9)
            .add64_imm(base, i32::from(cell) + 16);
        (setup, base, at as i16 - 16)
    } else {
        (Asm::new(), R9, cell + at as i16)
    }
}

fn size_name(size: Size) -> &'static str {
    match size {
        Size::B => "B",
        Size::H => "H",
        Size::W => "W",
        Size::DW => "DW",
    }
}

/// `dst = *(size *)(memory + at)`: zero-extending (`signed`: sign-extending, `BPF_MEMSX`).
fn load(signed: bool, size: Size, at: usize, negative: bool, turn: usize) -> Sub {
    let (rd, rb) = PAIRS[turn % PAIRS.len()];
    let memory = bytes_of(MEMORY);
    let expected = if signed {
        model::load_signed(size, &memory, at)
    } else {
        model::load(size, &memory, at)
    };
    let code = move |rd, rb, off| {
        if signed {
            Asm::new().ldsx(size, rd, rb, off)
        } else {
            Asm::new().ldx(size, rd, rb, off)
        }
    };
    Sub {
        name: format!(
            "{} {} at byte {at}{}",
            if signed { "ldsx" } else { "ldx" },
            size_name(size),
            if negative { " (negative offset)" } else { "" }
        ),
        group: if signed { Group::Base32 } else { group(size) },
        section: if signed { "5.2" } else { "5.1" },
        insn: code(rd, rb, if negative { at as i16 - 16 } else { at as i16 }).insns()[0],
        cells: vec![
            Cell::memory("memory0", MEMORY[0], MEMORY[0]),
            Cell::memory("memory1", MEMORY[1], MEMORY[1]),
            Cell::result("dst_after", expected),
        ],
        emit: Box::new(move |at_| {
            let (setup, base, off) = address(negative, rb, at_.cell(0), at);
            setup
                .ld_imm64(rd, GARBAGE)
                .append(&code(rd, base, off))
                .stx(Size::DW, R9, at_.cell(2), rd)
        }),
    }
}

/// `*(size *)(memory + at) = imm` (`ST`) or `= src` (`STX`, `src` holding `value`).
fn store(register: bool, size: Size, at: usize, value: u64, negative: bool, turn: usize) -> Sub {
    let (rs, rb) = PAIRS[turn % PAIRS.len()];
    let before = [0xa5a5_a5a5_a5a5_a5a5_u64, 0x5a5a_5a5a_5a5a_5a5a];
    let mut memory = bytes_of(before);
    // ST's immediate is a signed 32-bit value: stored as a `DW` it keeps its sign.
    let stored = if register {
        value
    } else {
        model::imm(value as i32)
    };
    model::store(size, &mut memory, at, stored);
    let after = cells_of(&memory);
    let off = if negative { at as i16 - 16 } else { at as i16 };
    let code = move |rb, off| {
        if register {
            Asm::new().stx(size, rb, off, rs)
        } else {
            Asm::new().st_imm(size, rb, off, value as i32)
        }
    };
    let mut cells = vec![
        Cell::memory("memory0", before[0], after[0]),
        Cell::memory("memory1", before[1], after[1]),
    ];
    if register {
        cells.push(Cell::operand("src", value));
        cells.push(Cell::result("src_after", value));
    }
    Sub {
        name: format!(
            "{} {} {} at byte {at}{}",
            if register { "stx" } else { "st" },
            size_name(size),
            if register {
                run::hex(value)
            } else {
                format!("{}", value as i32)
            },
            if negative { " (negative offset)" } else { "" }
        ),
        group: group(size),
        section: "5.1",
        insn: code(rb, off).insns()[0],
        cells,
        emit: Box::new(move |at_| {
            let (setup, base, off) = address(negative, rb, at_.cell(0), at);
            let mut asm = setup;
            if register {
                asm = asm.ldx(Size::DW, rs, R9, at_.cell(2));
            }
            asm = asm.append(&code(base, off));
            if register {
                asm = asm.stx(Size::DW, R9, at_.cell(3), rs);
            }
            asm
        }),
    }
}

fn ldx() -> Family {
    let mut family = Family::new("LDX MEM", "insn.ebpf", NEVER);
    let cases = [
        (Size::B, 0, false),
        (Size::B, 7, false),
        (Size::B, 9, true),
        (Size::H, 0, false),
        (Size::H, 7, false),
        (Size::H, 14, true),
        (Size::W, 0, false),
        (Size::W, 3, false),
        (Size::W, 12, true),
        (Size::DW, 0, false),
        (Size::DW, 5, false),
        (Size::DW, 8, true),
    ];
    for (turn, (size, at, negative)) in cases.into_iter().enumerate() {
        family.subs.push(load(false, size, at, negative, turn));
    }
    family
}

fn ldsx() -> Family {
    // Before 6.6 a load's mode had to be BPF_MEM.
    let mut family = Family::new("LDX MEMSX", "insn.ldsx", "BPF_LDX uses reserved fields");
    let cases = [
        (Size::B, 0, false),
        (Size::B, 7, false),
        (Size::B, 9, true),
        (Size::H, 0, false),
        (Size::H, 7, false),
        (Size::H, 14, true),
        (Size::W, 0, false),
        (Size::W, 4, false),
        (Size::W, 12, true),
    ];
    for (turn, (size, at, negative)) in cases.into_iter().enumerate() {
        family.subs.push(load(true, size, at, negative, turn));
    }
    family
}

fn stores(register: bool) -> Family {
    let mut family = if register {
        Family::new("STX MEM", "insn.ebpf", NEVER)
    } else {
        Family::new("ST MEM", "insn.ebpf", NEVER)
    };
    let cases: &[(Size, usize, u64, bool)] = if register {
        &[
            (Size::B, 0, 0x0123_4567_89ab_cdef, false),
            (Size::B, 13, 0xfedc_ba98_7654_3210, true),
            (Size::H, 1, 0x0123_4567_89ab_cdef, false),
            (Size::H, 7, 0xfedc_ba98_7654_3210, false),
            (Size::W, 2, 0x0123_4567_89ab_cdef, false),
            (Size::W, 6, 0xfedc_ba98_7654_3210, true),
            (Size::DW, 0, 0x0123_4567_89ab_cdef, false),
            (Size::DW, 4, 0xfedc_ba98_7654_3210, false),
        ]
    } else {
        &[
            (Size::B, 0, 0x7f, false),
            (Size::B, 5, 0x180, false),
            (Size::B, 15, -1i64 as u64, true),
            (Size::H, 3, -2i64 as u64, false),
            (Size::H, 14, 0x12345, true),
            (Size::W, 0, i32::MIN as i64 as u64, false),
            (Size::W, 6, -1i64 as u64, false),
            (Size::DW, 0, -2i64 as u64, false),
            (Size::DW, 3, 0x7fff_ffff, false),
            (Size::DW, 8, i32::MIN as i64 as u64, true),
        ]
    };
    for (turn, &(size, at, value, negative)) in cases.iter().enumerate() {
        family
            .subs
            .push(store(register, size, at, value, negative, turn));
    }
    family
}

/// `ld_imm64` (§5.4): "dst = (next_imm << 32) | imm" (source 0), and "dst = map_val(map_by_fd(imm))
/// + next_imm" (source 2).
fn ld_imm64() -> Family {
    let mut family = Family::new("LD IMM DW", "insn.ebpf", NEVER);
    let values = [
        0,
        // The low word's sign bit must not spread into the high one.
        0x0000_0001_8000_0000,
        0xffff_ffff_0000_0001,
        i64::MIN as u64,
        0x1234_5678_9abc_def0,
        u64::MAX,
    ];
    for (turn, value) in values.into_iter().enumerate() {
        let rd = PAIRS[turn % PAIRS.len()].0;
        let code = Asm::new().ld_imm64(rd, value);
        family.subs.push(Sub {
            name: format!("ld_imm64 {}", run::hex(value)),
            group: Group::Base64,
            section: "5.4",
            insn: code.insns()[0],
            cells: vec![Cell::result("dst_after", value).literal(value)],
            emit: Box::new(move |at| code.clone().stx(Size::DW, R9, at.cell(0), rd)),
        });
    }
    let word = 0x600d_f00d_1234_5678;
    family.subs.push(Sub {
        name: "ld_imm64 map_val(map_by_fd(imm)) + next_imm (src 2)".to_owned(),
        group: Group::Base64,
        section: "5.4.1",
        insn: testkit::insn::Insn::new(0x18, 1, testkit::insn::PSEUDO_MAP_VALUE, 0, 0),
        cells: vec![
            Cell::memory("word", word, word),
            Cell::result("loaded", word).literal(word),
        ],
        emit: Box::new(|at| {
            Asm::new()
                .ld_map_value(R1, at.map, at.cell(0) as u32)
                .ldx(Size::DW, R2, R1, 0)
                .stx(Size::DW, R9, at.cell(1), R2)
        }),
    });
    family
}

#[test]
fn mem_ldx() {
    run::run(ldx());
}

#[test]
fn mem_ldsx() {
    run::run(ldsx());
}

#[test]
fn mem_st() {
    run::run(stores(false));
}

#[test]
fn mem_stx() {
    run::run(stores(true));
}

#[test]
fn mem_ld_imm64() {
    run::run(ld_imm64());
}
