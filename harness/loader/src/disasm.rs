//! Translated instructions (what the verifier made of a program, `bpf_prog_info.xlated_prog_insns`)
//! as text, in two renderings:
//! - [`text`]: the kernel's BPF disassembler (`kernel/bpf/disasm.c`, `print_bpf_insn`) as the
//!   kernel's selftests use it (`disasm_helpers.c`: the `(code) ` prefix dropped, a call's `#id`
//!   suffix dropped, subprogram calls by their offset), one `N: text` line per instruction
//!   (`get_xlated_program_text`), for their `__xlated` expectations;
//! - [`fields`]: each slot's fields (`code=… dst=… src=… off=… imm=…`) with what changes from run
//!   to run or build to build replaced, for snapshots that must not depend on how a kernel
//!   version prints an instruction.

use std::fmt::Write as _;

use crate::insn::{
    ABS, ALU, ALU64, ATOMIC, CALL, DW, END, EXIT, IMM, IND, Insn, JA, JMP, JMP32, LD, LDX,
    LOAD_ACQ, MEM, MEMSX, MOV, PSEUDO_CALL, PSEUDO_KFUNC_CALL, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE, ST,
    STORE_REL, STX, X,
};

const BPF_PROBE_ATOMIC: u8 = 0xe0;
const BPF_NOSPEC: u8 = 0xc0;

const BPF_DIV: u8 = 0x30;
const BPF_NEG: u8 = 0x80;
const BPF_MOD: u8 = 0x90;
const BPF_JCOND: u8 = 0xe0;

const BPF_ADD: i32 = 0x00;
const BPF_OR: i32 = 0x40;
const BPF_AND: i32 = 0x50;
const BPF_XOR: i32 = 0xa0;
const BPF_FETCH: i32 = 0x01;
const BPF_XCHG: i32 = 0xe0 | BPF_FETCH;
const BPF_CMPXCHG: i32 = 0xf0 | BPF_FETCH;

const MAY_GOTO: u8 = 0;
const ADDR_SPACE_CAST: i16 = 1;
const ADDR_PERCPU: i16 = -1;

const CLASS: [&str; 8] = ["ld", "ldx", "st", "stx", "alu", "jmp", "jmp32", "alu64"];
const ALU_OPS: [&str; 16] = [
    "+=", "-=", "*=", "/=", "|=", "&=", "<<=", ">>=", "neg", "%=", "^=", "=", "s>>=", "endian", "",
    "",
];
const JMP_OPS: [&str; 16] = [
    "jmp", "==", ">", ">=", "&", "!=", "s>", "s>=", "call", "exit", "<", "<=", "s<", "s<=", "", "",
];

/// `N: text` lines of a translated program; `helpers` are the helper names by id
/// (`bpf_map_lookup_elem` at 1).
pub fn text(insns: &[Insn], helpers: &[String]) -> String {
    let mut out = String::new();
    for (i, insn, next) in slots(insns) {
        let next = next.unwrap_or_default();
        let _ = writeln!(out, "{i}: {}", strip(&print(&insn, next, helpers)));
    }
    out
}

/// `<slot>: code=<opcode> dst=r<n> src=<n> off=<off> imm=<imm>` lines, with what changes from run
/// to run or build to build replaced: a map's id (`[map id]`, the kernel puts it where the map's
/// address is), kernel addresses (`[addr]`), and a helper call's immediate (its distance from
/// `__bpf_call_base`) by the name `helper` gives it (`[helper]` when it gives none).
pub fn fields(insns: &[Insn], helper: impl Fn(i32) -> Option<String>) -> Vec<String> {
    let mut lines = Vec::with_capacity(insns.len());
    for (i, insn, next) in slots(insns) {
        let line = |imm: String| {
            format!(
                "{i:>3}: code={:02x} dst=r{} src={} off={} imm={imm}",
                insn.code, insn.dst, insn.src, insn.off
            )
        };
        if let Some(next) = next {
            let high = next.imm;
            let value = (high as u32 as u64) << 32 | insn.imm as u32 as u64;
            let (imm, next) = if [PSEUDO_MAP_FD, PSEUDO_MAP_VALUE].contains(&insn.src) {
                ("[map id]".to_owned(), high.to_string())
            } else if value >> 48 == 0xffff {
                ("[addr]".to_owned(), "[addr]".to_owned())
            } else {
                (insn.imm.to_string(), high.to_string())
            };
            lines.push(line(imm));
            lines.push(format!(
                "{:>3}: code=00 dst=r0 src=0 off=0 imm={next}",
                i + 1
            ));
            continue;
        }
        let imm = if insn.is_helper_call() {
            helper(insn.imm).unwrap_or_else(|| "[helper]".to_owned())
        } else {
            insn.imm.to_string()
        };
        lines.push(line(imm));
    }
    lines
}

/// The instructions with their slot numbers; an `ld_imm64` comes with its second slot (when the
/// program has one) and counts for two.
fn slots(insns: &[Insn]) -> impl Iterator<Item = (usize, Insn, Option<Insn>)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let insn = *insns.get(i)?;
        let at = i;
        if insn.is_ld_imm64() {
            i += 2;
            Some((at, insn, insns.get(at + 1).copied()))
        } else {
            i += 1;
            Some((at, insn, None))
        }
    })
}

/// `disasm_insn` of the selftests: drops the `(xx) ` prefix and a call's `#id` suffix.
fn strip(line: &str) -> String {
    let body = line.get(5..).unwrap_or("");
    if body.starts_with("call ")
        && let Some(hash) = line.rfind('#')
        && hash >= 5
    {
        return line[5..hash].to_owned();
    }
    body.to_owned()
}

fn reg(class: u8) -> char {
    if class == ALU || class == JMP32 {
        'w'
    } else {
        'r'
    }
}

fn ldst(size: u8) -> &'static str {
    ["u32", "u16", "u8", "u64"][usize::from(size >> 3)]
}

/// `%+d`.
fn signed(v: impl Into<i64>) -> String {
    format!("{:+}", v.into())
}

/// `print_bpf_insn` with `allow_ptr_leaks`; `next` is the instruction after it (ldimm64).
fn print(insn: &Insn, next: Insn, helpers: &[String]) -> String {
    let code = insn.code;
    let class = insn.class();
    let (d, s, off, imm) = (insn.dst, insn.src, insn.off, insn.imm);
    if class == ALU || class == ALU64 {
        let r = if class == ALU { 'w' } else { 'r' };
        let op = insn.op();
        let sign = (op == BPF_DIV || op == BPF_MOD) && off == 1;
        let alu = if sign {
            if op == BPF_DIV { "s/=" } else { "s%=" }
        } else {
            ALU_OPS[usize::from(op >> 4)]
        };
        if op == END {
            if class == ALU64 {
                format!("({code:02x}) r{d} = bswap{imm} r{d}")
            } else {
                let order = if insn.source() == X { "be" } else { "le" };
                format!("({code:02x}) r{d} = {order}{imm} r{d}")
            }
        } else if op == BPF_NEG {
            format!("({code:02x}) {r}{d} = -{r}{d}")
        } else if code == ALU64 | MOV | X && off == ADDR_SPACE_CAST {
            let (to, from) = ((imm as u32) >> 16, imm as u32 & 0xffff);
            format!("({code:02x}) r{d} = addr_space_cast(r{s}, {to}, {from})")
        } else if code == ALU64 | MOV | X && off == ADDR_PERCPU {
            format!("({code:02x}) r{d} = &(void __percpu *)(r{s})")
        } else if insn.source() == X {
            let movsx = match (op == MOV, off) {
                (true, 8) => "(s8)",
                (true, 16) => "(s16)",
                (true, 32) => "(s32)",
                _ => "",
            };
            format!("({code:02x}) {r}{d} {alu} {movsx}{r}{s}")
        } else {
            format!("({code:02x}) {r}{d} {alu} {imm}")
        }
    } else if class == STX {
        let mode = insn.mode();
        let atomic = mode == ATOMIC || mode == BPF_PROBE_ATOMIC;
        let probe = if mode == BPF_PROBE_ATOMIC {
            "probe "
        } else {
            ""
        };
        let size = ldst(insn.size());
        let bits = if insn.size() == DW { "64" } else { "" };
        let fetch_op = |imm: i32| {
            ["add", "", "", "", "or", "and", "", "", "", "", "xor"]
                [usize::try_from((imm & 0xf0) >> 4).unwrap_or(1)]
        };
        if mode == MEM {
            format!("({code:02x}) *({size} *)(r{d} {}) = r{s}", signed(off))
        } else if atomic && [BPF_ADD, BPF_AND, BPF_OR, BPF_XOR].contains(&imm) {
            let alu = ALU_OPS[usize::try_from((imm & 0xf0) >> 4).unwrap_or(0)];
            format!(
                "({code:02x}) {probe}lock *({size} *)(r{d} {}) {alu} r{s}",
                signed(off)
            )
        } else if atomic
            && [BPF_ADD, BPF_AND, BPF_OR, BPF_XOR].contains(&(imm & !BPF_FETCH))
            && imm & BPF_FETCH != 0
        {
            format!(
                "({code:02x}) {probe}r{s} = atomic{bits}_fetch_{}(({size} *)(r{d} {}), r{s})",
                fetch_op(imm),
                signed(off)
            )
        } else if atomic && imm == BPF_CMPXCHG {
            format!(
                "({code:02x}) {probe}r0 = atomic{bits}_cmpxchg(({size} *)(r{d} {}), r0, r{s})",
                signed(off)
            )
        } else if atomic && imm == BPF_XCHG {
            format!(
                "({code:02x}) {probe}r{s} = atomic{bits}_xchg(({size} *)(r{d} {}), r{s})",
                signed(off)
            )
        } else if atomic && imm == LOAD_ACQ {
            format!(
                "({code:02x}) {probe}r{d} = load_acquire(({size} *)(r{s} {}))",
                signed(off)
            )
        } else if atomic && imm == STORE_REL {
            format!(
                "({code:02x}) {probe}store_release(({size} *)(r{d} {}), r{s})",
                signed(off)
            )
        } else {
            format!("BUG_{code:02x}")
        }
    } else if class == ST {
        if insn.mode() == MEM {
            let size = ldst(insn.size());
            format!("({code:02x}) *({size} *)(r{d} {}) = {imm}", signed(off))
        } else if insn.mode() == BPF_NOSPEC {
            format!("({code:02x}) nospec")
        } else {
            format!("BUG_st_{code:02x}")
        }
    } else if class == LDX {
        let mode = insn.mode();
        if (mode != MEM && mode != MEMSX) || (mode == MEMSX && insn.size() == DW) {
            return format!("BUG_ldx_{code:02x}");
        }
        let size = if mode == MEM {
            ldst(insn.size())
        } else {
            ["s32", "s16", "s8", ""][usize::from(insn.size() >> 3)]
        };
        format!("({code:02x}) r{d} = *({size} *)(r{s} {})", signed(off))
    } else if class == LD {
        let size = ldst(insn.size());
        match insn.mode() {
            ABS => format!("({code:02x}) r0 = *({size} *)skb[{imm}]"),
            IND => format!("({code:02x}) r0 = *({size} *)skb[r{s} + {imm}]"),
            IMM if insn.size() == DW => {
                // allow_ptr_leaks: pointers are printed as they are.
                let full = (u64::from(next.imm as u32) << 32) | u64::from(imm as u32);
                format!("({code:02x}) r{d} = 0x{full:x}")
            }
            _ => format!("BUG_ld_{code:02x}"),
        }
    } else if class == JMP || class == JMP32 {
        let op = insn.op();
        let r = reg(class);
        if op == CALL {
            if s == PSEUDO_CALL {
                // disasm_helpers.c: the verifier moved the call's offset into `off`.
                format!("({code:02x}) call pc{}", signed(off))
            } else {
                let name = match (s, usize::try_from(imm)) {
                    (0, Ok(id)) if id < helpers.len() => helpers[id].clone(),
                    (PSEUDO_KFUNC_CALL, _) => "kernel-function".to_owned(),
                    _ => "unknown".to_owned(),
                };
                format!("({code:02x}) call {name}#{imm}")
            }
        } else if code == JMP | JA {
            format!("({code:02x}) goto pc{}", signed(off))
        } else if code == JMP | JA | X {
            format!("({code:02x}) gotox r{d}")
        } else if code == JMP | BPF_JCOND && s == MAY_GOTO {
            format!("({code:02x}) may_goto pc{}", signed(off))
        } else if code == JMP32 | JA {
            format!("({code:02x}) gotol pc{}", signed(imm))
        } else if code == JMP | EXIT {
            format!("({code:02x}) exit")
        } else if insn.source() == X {
            let jmp = JMP_OPS[usize::from(op >> 4)];
            format!("({code:02x}) if {r}{d} {jmp} {r}{s} goto pc{}", signed(off))
        } else {
            let jmp = JMP_OPS[usize::from(op >> 4)];
            format!(
                "({code:02x}) if {r}{d} {jmp} 0x{:x} goto pc{}",
                imm as u32,
                signed(off)
            )
        }
    } else {
        format!("({code:02x}) {}", CLASS[usize::from(class)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_as_the_selftests_do() {
        let helpers: Vec<String> = ["bpf_unspec", "bpf_map_lookup_elem"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let prog = [
            Insn::new(0xb7, 1, 0, 0, 1),                   // r1 = 1
            Insn::new(0xbc, 4, 2, 0, 0),                   // w4 = w2
            Insn::new(0x7b, 10, 1, -8, 0),                 // *(u64 *)(r10 -8) = r1
            Insn::new(0x79, 1, 10, -16, 0),                // r1 = *(u64 *)(r10 -16)
            Insn::new(0x18, 2, 0, 0, 0),                   // ldimm64
            Insn::new(0x00, 0, 0, 0, -0x8000_0000),        // … second half
            Insn::new(0x15, 1, 0, 5, 0),                   // if r1 == 0x0 goto pc+5
            Insn::new(0x85, 0, 0, 0, 1),                   // call bpf_map_lookup_elem#1
            Insn::new(0x85, 0, 1, 1, 3),                   // call pc+1
            Insn::new(0x85, 0, 2, 0, 12345),               // kfunc
            Insn::new(0xbf, 0, 0, -1, 0),                  // percpu
            Insn::new(0xc3, 1, 2, 8, BPF_ADD | BPF_FETCH), // atomic_fetch_add
            Insn::new(0x87, 2, 0, 0, 0),                   // r2 = -r2
            Insn::new(0x05, 0, 0, -3, 0),                  // goto pc-3
            Insn::new(0x95, 0, 0, 0, 0),                   // exit
        ];
        assert_eq!(
            text(&prog, &helpers),
            "0: r1 = 1\n1: w4 = w2\n2: *(u64 *)(r10 -8) = r1\n3: r1 = *(u64 *)(r10 -16)\n\
             4: r2 = 0x8000000000000000\n6: if r1 == 0x0 goto pc+5\n7: call bpf_map_lookup_elem\n\
             8: call pc+1\n9: call kernel-function\n10: r0 = &(void __percpu *)(r0)\n\
             11: r2 = atomic_fetch_add((u32 *)(r1 +8), r2)\n12: r2 = -r2\n13: goto pc-3\n14: exit\n"
        );
    }

    #[test]
    fn fields_redact_maps_addresses_and_helpers() {
        let prog = [
            Insn::new(0x18, 1, PSEUDO_MAP_FD, 0, 7), // r1 = map fd 7
            Insn::new(0x00, 0, 0, 0, 0),
            Insn::new(0x18, 2, 0, 0, 0x3_6b18), // r2 = kernel address
            Insn::new(0x00, 0, 0, 0, -0x777f),  // 0xffff8881_00036b18
            Insn::new(0x85, 0, 0, 0, 1234),     // helper call
            Insn::new(0x85, 0, PSEUDO_CALL, 0, 1), // subprogram call
            Insn::new(0x95, 0, 0, 0, 0),
        ];
        let named = |imm: i32| (imm == 1234).then(|| "bpf_map_lookup_elem".to_owned());
        assert_eq!(
            fields(&prog, named),
            [
                "  0: code=18 dst=r1 src=1 off=0 imm=[map id]",
                "  1: code=00 dst=r0 src=0 off=0 imm=0",
                "  2: code=18 dst=r2 src=0 off=0 imm=[addr]",
                "  3: code=00 dst=r0 src=0 off=0 imm=[addr]",
                "  4: code=85 dst=r0 src=0 off=0 imm=bpf_map_lookup_elem",
                "  5: code=85 dst=r0 src=1 off=0 imm=1",
                "  6: code=95 dst=r0 src=0 off=0 imm=0",
            ]
        );
        assert_eq!(
            fields(&prog[4..5], |_| None),
            ["  0: code=85 dst=r0 src=0 off=0 imm=[helper]"]
        );
    }
}
