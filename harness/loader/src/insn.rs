//! One BPF instruction slot, field by field, and the encoding constants (uapi
//! `linux/bpf_common.h`, `linux/bpf.h`) that the instruction builder, the disassembler and the
//! probes write instructions with.

use libbpf_rs::libbpf_sys::bpf_insn;

// Instruction classes, modes and sources.
/// Class: non-standard loads (`ld_imm64`, the legacy packet loads).
pub const LD: u8 = 0x00;
/// Class: loads into a register.
pub const LDX: u8 = 0x01;
/// Class: stores of an immediate.
pub const ST: u8 = 0x02;
/// Class: stores of a register (and the atomic operations).
pub const STX: u8 = 0x03;
/// Class: 32-bit arithmetic.
pub const ALU: u8 = 0x04;
/// Class: 64-bit jumps, calls, exit.
pub const JMP: u8 = 0x05;
/// Class: 32-bit jumps (5.1+).
pub const JMP32: u8 = 0x06;
/// Class: 64-bit arithmetic.
pub const ALU64: u8 = 0x07;
/// Size: 8 bytes (`BPF_DW`).
pub const DW: u8 = 0x18;
/// Mode: 64-bit immediate.
pub const IMM: u8 = 0x00;
/// Mode: legacy packet load at an absolute offset.
pub const ABS: u8 = 0x20;
/// Mode: legacy packet load at a register plus an offset.
pub const IND: u8 = 0x40;
/// Mode: regular load or store.
pub const MEM: u8 = 0x60;
/// Mode: sign-extending load (6.6+).
pub const MEMSX: u8 = 0x80;
/// Mode: atomic operation (the operation in the immediate).
pub const ATOMIC: u8 = 0xc0;
/// Source: the immediate.
pub const K: u8 = 0x00;
/// Source: `src_reg`.
pub const X: u8 = 0x08;
/// Op: unconditional jump.
pub const JA: u8 = 0x00;
/// Op: call.
pub const CALL: u8 = 0x80;
/// Op: exit.
pub const EXIT: u8 = 0x90;
/// Op: move (`BPF_MOV`); with `off` 8, 16 or 32 a sign-extending move (6.6+).
pub const MOV: u8 = 0xb0;
/// Op: byte swap (`BPF_END`); `K`/`X` select little/big endian (`BPF_TO_LE`/`BPF_TO_BE`).
pub const END: u8 = 0xd0;
/// Atomic immediate: load-acquire (6.15+).
pub const LOAD_ACQ: i32 = 0x100;
/// Atomic immediate: store-release (6.15+).
pub const STORE_REL: i32 = 0x110;
/// `src_reg` of an `ld_imm64` whose immediate is a map fd.
pub const PSEUDO_MAP_FD: u8 = 1;
/// `src_reg` of an `ld_imm64` whose immediate is a map fd and whose second slot is an offset into
/// its value (5.2+).
pub const PSEUDO_MAP_VALUE: u8 = 2;
/// `src_reg` of an `ld_imm64` whose immediate is the distance to a subprogram (a callback, 5.13+).
pub const PSEUDO_FUNC: u8 = 4;
/// `src_reg` of a call to a subprogram of the same program (bpf-to-bpf call, 4.16+).
pub const PSEUDO_CALL: u8 = 1;
/// `src_reg` of a call to a kernel function (kfunc, 5.13+): the immediate is its BTF id, `off`
/// indexes `fd_array` for a module's kfunc.
pub const PSEUDO_KFUNC_CALL: u8 = 2;

/// One instruction slot, field by field.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Insn {
    /// Opcode: class | size/op | mode/source.
    pub code: u8,
    /// Destination register (4 bits).
    pub dst: u8,
    /// Source register (4 bits), or a pseudo marker (`PSEUDO_MAP_FD`).
    pub src: u8,
    /// Offset: jump distance in slots, or memory offset in bytes.
    pub off: i16,
    /// Immediate.
    pub imm: i32,
}

impl Insn {
    /// Builds a slot from its fields.
    pub fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            dst,
            src,
            off,
            imm,
        }
    }

    /// A slot of the kernel's `struct bpf_insn`.
    pub fn from_bpf(insn: &bpf_insn) -> Self {
        Insn::new(
            insn.code,
            insn.dst_reg(),
            insn.src_reg(),
            insn.off,
            insn.imm,
        )
    }

    /// The kernel's `struct bpf_insn`.
    pub fn to_bpf(self) -> bpf_insn {
        let mut insn = bpf_insn {
            code: self.code,
            off: self.off,
            imm: self.imm,
            ..Default::default()
        };
        insn.set_dst_reg(self.dst);
        insn.set_src_reg(self.src);
        insn
    }

    /// The class (`LD` … `ALU64`).
    pub fn class(self) -> u8 {
        self.code & 0x07
    }

    /// The size of a load or store (`DW`, …).
    pub fn size(self) -> u8 {
        self.code & 0x18
    }

    /// The mode of a load or store (`MEM`, `ATOMIC`, …).
    pub fn mode(self) -> u8 {
        self.code & 0xe0
    }

    /// The operation of an arithmetic or jump instruction.
    pub fn op(self) -> u8 {
        self.code & 0xf0
    }

    /// The source: `K` (the immediate) or `X` (`src`).
    pub fn source(self) -> u8 {
        self.code & 0x08
    }

    /// Whether this slot is the first of an `ld_imm64` (the next slot holds the upper half).
    pub fn is_ld_imm64(self) -> bool {
        self.code == LD | DW | IMM
    }

    /// Whether this slot calls a helper (not a subprogram or kernel function).
    pub fn is_helper_call(self) -> bool {
        self.code == JMP | CALL && self.src == 0
    }
}

impl std::fmt::Display for Insn {
    /// `code=<opcode> dst=r<n> src=<n> off=<off> imm=<imm>`, as the translated instructions are
    /// rendered.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "code={:02x} dst=r{} src={} off={} imm={}",
            self.code, self.dst, self.src, self.off, self.imm
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpf_insn_round_trip() {
        let insn = Insn::new(LD | DW | IMM, 2, PSEUDO_FUNC, -3, 7);
        let raw = insn.to_bpf();
        assert_eq!(
            (raw.dst_reg(), raw.src_reg(), raw.off, raw.imm),
            (2, 4, -3, 7)
        );
        assert_eq!(Insn::from_bpf(&raw), insn);
        assert!(insn.is_ld_imm64() && !insn.is_helper_call());
        assert!(Insn::new(JMP | CALL, 0, 0, 0, 1).is_helper_call());
        assert!(!Insn::new(JMP | CALL, 0, PSEUDO_KFUNC_CALL, 0, 1).is_helper_call());
    }
}
