//! A BPF instruction builder, so verifier cases are written as instruction lists whose verifier
//! logs do not change with the clang version.
//!
//! ```
//! use testkit::insn::{Asm, Jmp, Reg::*};
//!
//! // r0 = 0; loop: r0 += 1; if r0 < 10 goto loop; exit
//! let prog = Asm::new()
//!     .mov64_imm(R0, 0)
//!     .add64_imm(R0, 1)
//!     .jmp_imm(Jmp::Jlt, R0, 10, -2) // offsets count from the next instruction
//!     .exit();
//! assert_eq!(prog.len(), 4);
//! ```
//!
//! Jump offsets are in instruction slots relative to the instruction after the jump, as the kernel
//! counts them; `ld_imm64` and map loads take two slots.

use std::os::fd::{AsRawFd, BorrowedFd};

use libbpf_rs::libbpf_sys::{bpf_func_id, bpf_insn};

/// A BPF register. `R10` is the read-only frame pointer; `R1`–`R5` carry helper arguments and
/// `R0` the return value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

/// Arithmetic operations (`BPF_ALU`/`BPF_ALU64` op field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Alu {
    Add = 0x00,
    Sub = 0x10,
    Mul = 0x20,
    Div = 0x30,
    Or = 0x40,
    And = 0x50,
    Lsh = 0x60,
    Rsh = 0x70,
    Neg = 0x80,
    Mod = 0x90,
    Xor = 0xa0,
    Mov = 0xb0,
    Arsh = 0xc0,
}

/// Conditional jumps (`BPF_JMP` op field); `Jlt`/`Jle`/`Jslt`/`Jsle` need kernel 4.14.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Jmp {
    Jeq = 0x10,
    Jgt = 0x20,
    Jge = 0x30,
    Jset = 0x40,
    Jne = 0x50,
    Jsgt = 0x60,
    Jsge = 0x70,
    Jlt = 0xa0,
    Jle = 0xb0,
    Jslt = 0xc0,
    Jsle = 0xd0,
}

/// Memory access sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// 1 byte.
    B = 0x10,
    /// 2 bytes.
    H = 0x08,
    /// 4 bytes.
    W = 0x00,
    /// 8 bytes.
    DW = 0x18,
}

// Instruction classes, modes and sources (uapi/linux/bpf_common.h, bpf.h).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;
const K: u8 = 0x00;
const X: u8 = 0x08;
const JA: u8 = 0x00;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
/// `src_reg` of an `ld_imm64` whose immediate is a map fd.
pub const PSEUDO_MAP_FD: u8 = 1;
/// `src_reg` of an `ld_imm64` whose immediate is a map fd and whose second slot is an offset into
/// its value (5.2+).
pub const PSEUDO_MAP_VALUE: u8 = 2;
/// `src_reg` of an `ld_imm64` whose immediate is the distance to a subprogram (a callback, 5.13+).
pub const PSEUDO_FUNC: u8 = 4;
/// `src_reg` of a call to a subprogram of the same program (bpf-to-bpf call, 4.16+).
pub const PSEUDO_CALL: u8 = 1;

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

    /// Whether this slot is the first of an `ld_imm64` (the next slot holds the upper half).
    pub fn is_ld_imm64(self) -> bool {
        self.code == LD | Size::DW as u8 | IMM
    }

    /// Whether this slot calls a helper (not a subprogram or kernel function).
    pub fn is_helper_call(self) -> bool {
        self.code == JMP | CALL && self.src == 0
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
}

/// A program under construction: each method appends one instruction (two for 64-bit immediates).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Asm {
    insns: Vec<Insn>,
}

impl Asm {
    /// An empty program.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of instruction slots so far.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether no instruction has been added.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// The slots, in order.
    pub fn insns(&self) -> &[Insn] {
        &self.insns
    }

    /// The program as the kernel takes it.
    pub fn to_bpf(&self) -> Vec<bpf_insn> {
        self.insns.iter().map(|i| i.to_bpf()).collect()
    }

    /// Appends a raw slot (for encodings the builder has no method for).
    pub fn push(mut self, insn: Insn) -> Self {
        self.insns.push(insn);
        self
    }

    /// Appends every slot of `other`.
    pub fn append(mut self, other: &Asm) -> Self {
        self.insns.extend_from_slice(&other.insns);
        self
    }

    /// `dst = imm` (64-bit, sign-extended).
    pub fn mov64_imm(self, dst: Reg, imm: i32) -> Self {
        self.alu64_imm(Alu::Mov, dst, imm)
    }

    /// `dst = src` (64-bit).
    pub fn mov64_reg(self, dst: Reg, src: Reg) -> Self {
        self.alu64_reg(Alu::Mov, dst, src)
    }

    /// `dst += imm` (64-bit).
    pub fn add64_imm(self, dst: Reg, imm: i32) -> Self {
        self.alu64_imm(Alu::Add, dst, imm)
    }

    /// `dst op= imm` (64-bit).
    pub fn alu64_imm(self, op: Alu, dst: Reg, imm: i32) -> Self {
        self.push(Insn::new(ALU64 | op as u8 | K, dst as u8, 0, 0, imm))
    }

    /// `dst op= src` (64-bit).
    pub fn alu64_reg(self, op: Alu, dst: Reg, src: Reg) -> Self {
        self.push(Insn::new(ALU64 | op as u8 | X, dst as u8, src as u8, 0, 0))
    }

    /// `dst op= imm` (32-bit: the upper half of `dst` is zeroed).
    pub fn alu32_imm(self, op: Alu, dst: Reg, imm: i32) -> Self {
        self.push(Insn::new(ALU | op as u8 | K, dst as u8, 0, 0, imm))
    }

    /// `dst op= src` (32-bit).
    pub fn alu32_reg(self, op: Alu, dst: Reg, src: Reg) -> Self {
        self.push(Insn::new(ALU | op as u8 | X, dst as u8, src as u8, 0, 0))
    }

    /// `dst = imm` with a full 64-bit immediate (two slots).
    pub fn ld_imm64(self, dst: Reg, imm: u64) -> Self {
        self.ld_imm64_src(dst, 0, imm)
    }

    /// `dst = map` for the map behind `fd` (two slots; the kernel swaps the fd for the map).
    pub fn ld_map_fd(self, dst: Reg, fd: BorrowedFd<'_>) -> Self {
        self.ld_imm64_src(dst, PSEUDO_MAP_FD, fd.as_raw_fd() as u32 as u64)
    }

    /// `dst = pseudo(imm)`: an `ld_imm64` whose `src_reg` tells the kernel what the immediate is
    /// ([`PSEUDO_MAP_FD`], …); for raw encodings, such as an fd that is no map.
    pub fn ld_imm64_pseudo(self, dst: Reg, src: u8, imm: i32) -> Self {
        self.ld_imm64_src(dst, src, imm as u32 as u64)
    }

    /// `dst = &subprogram` for a callback (`bpf_loop`, …): `off` slots from the slot after the
    /// first of these two (5.13+).
    pub fn ld_func(self, dst: Reg, off: i32) -> Self {
        self.ld_imm64_src(dst, PSEUDO_FUNC, off as u32 as u64)
    }

    fn ld_imm64_src(self, dst: Reg, src: u8, imm: u64) -> Self {
        self.push(Insn::new(
            LD | Size::DW as u8 | IMM,
            dst as u8,
            src,
            0,
            imm as u32 as i32,
        ))
        .push(Insn::new(0, 0, 0, 0, (imm >> 32) as u32 as i32))
    }

    /// `dst = *(size *)(src + off)`.
    pub fn ldx(self, size: Size, dst: Reg, src: Reg, off: i16) -> Self {
        self.push(Insn::new(
            LDX | size as u8 | MEM,
            dst as u8,
            src as u8,
            off,
            0,
        ))
    }

    /// `*(size *)(dst + off) = src`.
    pub fn stx(self, size: Size, dst: Reg, off: i16, src: Reg) -> Self {
        self.push(Insn::new(
            STX | size as u8 | MEM,
            dst as u8,
            src as u8,
            off,
            0,
        ))
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn st_imm(self, size: Size, dst: Reg, off: i16, imm: i32) -> Self {
        self.push(Insn::new(ST | size as u8 | MEM, dst as u8, 0, off, imm))
    }

    /// `if dst op imm goto +off`.
    pub fn jmp_imm(self, op: Jmp, dst: Reg, imm: i32, off: i16) -> Self {
        self.push(Insn::new(JMP | op as u8 | K, dst as u8, 0, off, imm))
    }

    /// `if dst op src goto +off`.
    pub fn jmp_reg(self, op: Jmp, dst: Reg, src: Reg, off: i16) -> Self {
        self.push(Insn::new(JMP | op as u8 | X, dst as u8, src as u8, off, 0))
    }

    /// `goto +off` (unconditional).
    pub fn ja(self, off: i16) -> Self {
        self.push(Insn::new(JMP | JA, 0, 0, off, 0))
    }

    /// Calls helper `id` (`BPF_FUNC_…`): arguments in `R1`–`R5`, result in `R0`.
    pub fn call(self, id: bpf_func_id) -> Self {
        self.push(Insn::new(JMP | CALL, 0, 0, 0, id as i32))
    }

    /// Calls the subprogram `off` slots after this call (bpf-to-bpf call): arguments in
    /// `R1`–`R5`, result in `R0`, `R6`–`R9` preserved, a stack frame of its own.
    pub fn call_local(self, off: i32) -> Self {
        self.push(Insn::new(JMP | CALL, 0, PSEUDO_CALL, 0, off))
    }

    /// `exit`: returns `R0`.
    pub fn exit(self) -> Self {
        self.push(Insn::new(JMP | EXIT, 0, 0, 0, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Reg::*;

    #[test]
    fn encodings_match_the_kernel_macros() {
        let prog = Asm::new()
            .mov64_imm(R0, 7) // BPF_MOV64_IMM: 0xb7
            .ld_imm64(R1, 0x1_0000_0002) // BPF_LD_IMM64: 0x18 + a second slot
            .ldx(Size::W, R2, R1, 4) // BPF_LDX_MEM(BPF_W): 0x61
            .stx(Size::DW, R10, -8, R0) // BPF_STX_MEM(BPF_DW): 0x7b
            .jmp_imm(Jmp::Jne, R0, 0, 1) // BPF_JMP_IMM(BPF_JNE): 0x55
            .call(1) // BPF_EMIT_CALL: 0x85
            .exit(); // BPF_EXIT_INSN: 0x95
        let codes: Vec<u8> = prog.insns().iter().map(|i| i.code).collect();
        assert_eq!(codes, [0xb7, 0x18, 0x00, 0x61, 0x7b, 0x55, 0x85, 0x95]);
        assert_eq!(prog.insns()[1].imm, 2);
        assert_eq!(prog.insns()[2].imm, 1);
        let raw = prog.to_bpf();
        assert_eq!((raw[3].dst_reg(), raw[3].src_reg(), raw[3].off), (2, 1, 4));
        assert_eq!(
            (raw[4].dst_reg(), raw[4].src_reg(), raw[4].off),
            (10, 0, -8)
        );
    }

    #[test]
    fn local_calls_and_callbacks_carry_their_pseudo_source() {
        // BPF_CALL_REL(1) and BPF_LD_IMM64_RAW(R2, BPF_PSEUDO_FUNC, 7).
        let prog = Asm::new().call_local(1).ld_func(R2, 7);
        let i = prog.insns();
        assert_eq!((i[0].code, i[0].src, i[0].imm), (0x85, PSEUDO_CALL, 1));
        assert!(!i[0].is_helper_call() && i[1].is_ld_imm64());
        assert_eq!(
            (i[1].dst, i[1].src, i[1].imm, i[2].imm),
            (2, PSEUDO_FUNC, 7, 0)
        );
        assert_eq!(Insn::from_bpf(&i[1].to_bpf()), i[1]);
    }
}
