//! The legacy packet loads (§5.5, group packet): `LD | ABS` and `LD | IND` of `B`, `H` and `W`.
//! The RFC defines only their encoding and deprecates them; their meaning is Linux's
//! (Documentation/bpf/linux-notes.rst): `R0` = the bytes at the offset in network order, `R6` the
//! context, `R1`–`R5` clobbered, and a read past the packet ends the program, returning 0.
//!
//! A socket filter sees the test frame from byte 14 on (after the Ethernet header).

use testkit::insn::{Asm, Reg::*, Size};

use super::model;
use super::run::{self, Cell, Family, Group, PACKET, Sub};

/// Where a socket filter's packet starts in the frame.
const DATA: usize = 14;

fn size_name(size: Size) -> &'static str {
    match size {
        Size::B => "B",
        Size::H => "H",
        _ => "W",
    }
}

/// `R0 = packet[at]` by `ld_abs` (`index` None) or `ld_ind` with `index` in `R7`.
fn load(size: Size, index: Option<i64>, imm: i32) -> Sub {
    let at = (index.unwrap_or(0) + i64::from(imm)) as usize;
    let expected = model::packet_load(size, &PACKET[DATA..], at)
        .unwrap_or_else(|| panic!("offset {at} is past the packet"));
    let code = match index {
        Some(_) => Asm::new().ld_ind(size, R7, imm),
        None => Asm::new().ld_abs(size, imm),
    };
    let mut cells = vec![];
    if let Some(index) = index {
        cells.push(Cell::operand("index", index as u64));
    }
    cells.push(Cell::result("r0", expected));
    Sub {
        name: match index {
            Some(index) => format!("ld_ind {} R7 = {index}, imm {imm}", size_name(size)),
            None => format!("ld_abs {} imm {imm}", size_name(size)),
        },
        group: Group::Packet,
        section: "5.5",
        insn: code.insns()[0],
        cells,
        emit: Box::new(move |at| {
            let mut asm = Asm::new().ld_imm64(R0, 0xdead_beef_dead_beef);
            if index.is_some() {
                asm = asm.ldx(Size::DW, R7, R9, at.cell(0));
            }
            let out = at.cell(if index.is_some() { 1 } else { 0 });
            asm.append(&code).stx(Size::DW, R9, out, R0)
        }),
    }
}

fn loads() -> Family {
    let mut family = Family::new("LD ABS/IND", "insn.packet", super::alu::NEVER);
    for (size, index, imm) in [
        (Size::B, None, 0),
        (Size::B, None, 13),
        (Size::H, None, 2),
        (Size::W, None, 4),
        // The last whole word of the 50 bytes.
        (Size::W, None, 46),
        (Size::B, Some(3), 2),
        (Size::H, Some(10), -2),
        (Size::W, Some(40), 6),
    ] {
        family.subs.push(load(size, index, imm));
    }
    family
}

/// A read past the packet's end ends the program with 0: the store before it happened, the one
/// after it did not, and the test run returns 0 instead of the program's own return value.
fn past_the_end() -> Family {
    let mut family = Family::new("LD ABS past the packet", "insn.packet", super::alu::NEVER);
    family.returns = 0;
    let code = Asm::new().ld_abs(Size::W, 48);
    family.subs.push(Sub {
        name: "ld_abs W imm 48 (2 bytes left) aborts the program".to_owned(),
        group: Group::Packet,
        section: "5.5",
        insn: code.insns()[0],
        cells: vec![
            Cell::result("before", 1),
            Cell::result("after", run::POISON),
        ],
        emit: Box::new(move |at| {
            Asm::new()
                .mov64_imm(R7, 1)
                .stx(Size::DW, R9, at.cell(0), R7)
                .append(&code)
                .stx(Size::DW, R9, at.cell(1), R0)
        }),
    });
    family
}

#[test]
fn packet_ld_abs_ind() {
    run::run(loads());
}

#[test]
fn packet_past_the_end() {
    run::run(past_the_end());
}
