//! The program after the verifier's rewrites, as text (`__xlated`): the kernel's BPF
//! disassembler (`kernel/bpf/disasm.c`, `print_bpf_insn`) as the selftests use it
//! (`disasm_helpers.c`: the `(code) ` prefix dropped, a call's `#id` suffix dropped, subprogram
//! calls by their offset), one `N: text` line per instruction (`get_xlated_program_text`).

use std::fmt::Write as _;

const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_ST: u8 = 0x02;
const BPF_STX: u8 = 0x03;
const BPF_ALU: u8 = 0x04;
const BPF_JMP: u8 = 0x05;
const BPF_JMP32: u8 = 0x06;
const BPF_ALU64: u8 = 0x07;

const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_ABS: u8 = 0x20;
const BPF_IND: u8 = 0x40;
const BPF_MEM: u8 = 0x60;
const BPF_MEMSX: u8 = 0x80;
const BPF_ATOMIC: u8 = 0xc0;
const BPF_PROBE_ATOMIC: u8 = 0xe0;
const BPF_NOSPEC: u8 = 0xc0;

const BPF_X: u8 = 0x08;
const BPF_DIV: u8 = 0x30;
const BPF_NEG: u8 = 0x80;
const BPF_MOD: u8 = 0x90;
const BPF_MOV: u8 = 0xb0;
const BPF_END: u8 = 0xd0;

const BPF_JA: u8 = 0x00;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;
const BPF_JCOND: u8 = 0xe0;

const BPF_ADD: i32 = 0x00;
const BPF_OR: i32 = 0x40;
const BPF_AND: i32 = 0x50;
const BPF_XOR: i32 = 0xa0;
const BPF_FETCH: i32 = 0x01;
const BPF_XCHG: i32 = 0xe0 | BPF_FETCH;
const BPF_CMPXCHG: i32 = 0xf0 | BPF_FETCH;
const BPF_LOAD_ACQ: i32 = 0x100;
const BPF_STORE_REL: i32 = 0x110;

const PSEUDO_CALL: u8 = 1;
const PSEUDO_KFUNC_CALL: u8 = 2;
const MAY_GOTO: u8 = 0;
const ADDR_SPACE_CAST: i16 = 1;
const ADDR_PERCPU: i16 = -1;

const CLASS: [&str; 8] = ["ld", "ldx", "st", "stx", "alu", "jmp", "jmp32", "alu64"];
const ALU: [&str; 16] = [
    "+=", "-=", "*=", "/=", "|=", "&=", "<<=", ">>=", "neg", "%=", "^=", "=", "s>>=", "endian", "",
    "",
];
const JMP: [&str; 16] = [
    "jmp", "==", ">", ">=", "&", "!=", "s>", "s>=", "call", "exit", "<", "<=", "s<", "s<=", "", "",
];

/// One instruction as the kernel encodes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Insn {
    /// Opcode.
    pub code: u8,
    /// Destination register.
    pub dst: u8,
    /// Source register (or pseudo-source kind).
    pub src: u8,
    /// Offset.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl Insn {
    /// Decodes 8 little-endian bytes.
    pub fn from_bytes(b: &[u8]) -> Insn {
        Insn {
            code: b[0],
            dst: b[1] & 0xf,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    fn class(&self) -> u8 {
        self.code & 0x07
    }
    fn size(&self) -> u8 {
        self.code & 0x18
    }
    fn mode(&self) -> u8 {
        self.code & 0xe0
    }
    fn op(&self) -> u8 {
        self.code & 0xf0
    }
    fn source(&self) -> u8 {
        self.code & 0x08
    }
}

/// `N: text` lines of an xlated program (`bpf_prog_info.xlated_prog_insns`); `helpers` are the
/// tree's helper names by id (`bpf_map_lookup_elem` at 1).
pub fn xlated_text(bytes: &[u8], helpers: &[String]) -> String {
    let insns: Vec<Insn> = bytes.chunks_exact(8).map(Insn::from_bytes).collect();
    let mut out = String::new();
    let mut i = 0;
    while i < insns.len() {
        let next = insns.get(i + 1).copied().unwrap_or_default();
        let _ = writeln!(out, "{i}: {}", strip(&print(&insns[i], next, helpers)));
        i += if insns[i].code == BPF_LD | BPF_IMM | BPF_DW {
            2
        } else {
            1
        };
    }
    out
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
    if class == BPF_ALU || class == BPF_JMP32 {
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
    if class == BPF_ALU || class == BPF_ALU64 {
        let r = if class == BPF_ALU { 'w' } else { 'r' };
        let op = insn.op();
        let sign = (op == BPF_DIV || op == BPF_MOD) && off == 1;
        let alu = if sign {
            if op == BPF_DIV { "s/=" } else { "s%=" }
        } else {
            ALU[usize::from(op >> 4)]
        };
        if op == BPF_END {
            if class == BPF_ALU64 {
                format!("({code:02x}) r{d} = bswap{imm} r{d}")
            } else {
                let order = if insn.source() == BPF_X { "be" } else { "le" };
                format!("({code:02x}) r{d} = {order}{imm} r{d}")
            }
        } else if op == BPF_NEG {
            format!("({code:02x}) {r}{d} = -{r}{d}")
        } else if code == BPF_ALU64 | BPF_MOV | BPF_X && off == ADDR_SPACE_CAST {
            let (to, from) = ((imm as u32) >> 16, imm as u32 & 0xffff);
            format!("({code:02x}) r{d} = addr_space_cast(r{s}, {to}, {from})")
        } else if code == BPF_ALU64 | BPF_MOV | BPF_X && off == ADDR_PERCPU {
            format!("({code:02x}) r{d} = &(void __percpu *)(r{s})")
        } else if insn.source() == BPF_X {
            let movsx = match (op == BPF_MOV, off) {
                (true, 8) => "(s8)",
                (true, 16) => "(s16)",
                (true, 32) => "(s32)",
                _ => "",
            };
            format!("({code:02x}) {r}{d} {alu} {movsx}{r}{s}")
        } else {
            format!("({code:02x}) {r}{d} {alu} {imm}")
        }
    } else if class == BPF_STX {
        let mode = insn.mode();
        let atomic = mode == BPF_ATOMIC || mode == BPF_PROBE_ATOMIC;
        let probe = if mode == BPF_PROBE_ATOMIC {
            "probe "
        } else {
            ""
        };
        let size = ldst(insn.size());
        let bits = if insn.size() == BPF_DW { "64" } else { "" };
        let fetch_op = |imm: i32| {
            ["add", "", "", "", "or", "and", "", "", "", "", "xor"]
                [usize::try_from((imm & 0xf0) >> 4).unwrap_or(1)]
        };
        if mode == BPF_MEM {
            format!("({code:02x}) *({size} *)(r{d} {}) = r{s}", signed(off))
        } else if atomic && [BPF_ADD, BPF_AND, BPF_OR, BPF_XOR].contains(&imm) {
            let alu = ALU[usize::try_from((imm & 0xf0) >> 4).unwrap_or(0)];
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
        } else if atomic && imm == BPF_LOAD_ACQ {
            format!(
                "({code:02x}) {probe}r{d} = load_acquire(({size} *)(r{s} {}))",
                signed(off)
            )
        } else if atomic && imm == BPF_STORE_REL {
            format!(
                "({code:02x}) {probe}store_release(({size} *)(r{d} {}), r{s})",
                signed(off)
            )
        } else {
            format!("BUG_{code:02x}")
        }
    } else if class == BPF_ST {
        if insn.mode() == BPF_MEM {
            let size = ldst(insn.size());
            format!("({code:02x}) *({size} *)(r{d} {}) = {imm}", signed(off))
        } else if insn.mode() == BPF_NOSPEC {
            format!("({code:02x}) nospec")
        } else {
            format!("BUG_st_{code:02x}")
        }
    } else if class == BPF_LDX {
        let mode = insn.mode();
        if (mode != BPF_MEM && mode != BPF_MEMSX) || (mode == BPF_MEMSX && insn.size() == BPF_DW) {
            return format!("BUG_ldx_{code:02x}");
        }
        let size = if mode == BPF_MEM {
            ldst(insn.size())
        } else {
            ["s32", "s16", "s8", ""][usize::from(insn.size() >> 3)]
        };
        format!("({code:02x}) r{d} = *({size} *)(r{s} {})", signed(off))
    } else if class == BPF_LD {
        let size = ldst(insn.size());
        match insn.mode() {
            BPF_ABS => format!("({code:02x}) r0 = *({size} *)skb[{imm}]"),
            BPF_IND => format!("({code:02x}) r0 = *({size} *)skb[r{s} + {imm}]"),
            BPF_IMM if insn.size() == BPF_DW => {
                // allow_ptr_leaks: pointers are printed as they are.
                let full = (u64::from(next.imm as u32) << 32) | u64::from(imm as u32);
                format!("({code:02x}) r{d} = 0x{full:x}")
            }
            _ => format!("BUG_ld_{code:02x}"),
        }
    } else if class == BPF_JMP || class == BPF_JMP32 {
        let op = insn.op();
        let r = reg(class);
        if op == BPF_CALL {
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
        } else if code == BPF_JMP | BPF_JA {
            format!("({code:02x}) goto pc{}", signed(off))
        } else if code == BPF_JMP | BPF_JA | BPF_X {
            format!("({code:02x}) gotox r{d}")
        } else if code == BPF_JMP | BPF_JCOND && s == MAY_GOTO {
            format!("({code:02x}) may_goto pc{}", signed(off))
        } else if code == BPF_JMP32 | BPF_JA {
            format!("({code:02x}) gotol pc{}", signed(imm))
        } else if code == BPF_JMP | BPF_EXIT {
            format!("({code:02x}) exit")
        } else if insn.source() == BPF_X {
            let jmp = JMP[usize::from(op >> 4)];
            format!("({code:02x}) if {r}{d} {jmp} {r}{s} goto pc{}", signed(off))
        } else {
            let jmp = JMP[usize::from(op >> 4)];
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

    fn bytes(insns: &[Insn]) -> Vec<u8> {
        insns
            .iter()
            .flat_map(|i| {
                let mut b = vec![i.code, i.dst | (i.src << 4)];
                b.extend(i.off.to_le_bytes());
                b.extend(i.imm.to_le_bytes());
                b
            })
            .collect()
    }

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    #[test]
    fn prints_as_the_selftests_do() {
        let helpers: Vec<String> = ["bpf_unspec", "bpf_map_lookup_elem"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let prog = [
            insn(0xb7, 1, 0, 0, 1),                   // r1 = 1
            insn(0xbc, 4, 2, 0, 0),                   // w4 = w2
            insn(0x7b, 10, 1, -8, 0),                 // *(u64 *)(r10 -8) = r1
            insn(0x79, 1, 10, -16, 0),                // r1 = *(u64 *)(r10 -16)
            insn(0x18, 2, 0, 0, 0),                   // ldimm64
            insn(0x00, 0, 0, 0, -0x8000_0000),        // … second half
            insn(0x15, 1, 0, 5, 0),                   // if r1 == 0x0 goto pc+5
            insn(0x85, 0, 0, 0, 1),                   // call bpf_map_lookup_elem#1
            insn(0x85, 0, 1, 1, 3),                   // call pc+1
            insn(0x85, 0, 2, 0, 12345),               // kfunc
            insn(0xbf, 0, 0, -1, 0),                  // percpu
            insn(0xc3, 1, 2, 8, BPF_ADD | BPF_FETCH), // atomic_fetch_add
            insn(0x87, 2, 0, 0, 0),                   // w? no: r2 = -r2
            insn(0x05, 0, 0, -3, 0),                  // goto pc-3
            insn(0x95, 0, 0, 0, 0),                   // exit
        ];
        let text = xlated_text(&bytes(&prog), &helpers);
        assert_eq!(
            text,
            "0: r1 = 1\n1: w4 = w2\n2: *(u64 *)(r10 -8) = r1\n3: r1 = *(u64 *)(r10 -16)\n\
             4: r2 = 0x8000000000000000\n6: if r1 == 0x0 goto pc+5\n7: call bpf_map_lookup_elem\n\
             8: call pc+1\n9: call kernel-function\n10: r0 = &(void __percpu *)(r0)\n\
             11: r2 = atomic_fetch_add((u32 *)(r1 +8), r2)\n12: r2 = -r2\n13: goto pc-3\n14: exit\n"
        );
    }
}
