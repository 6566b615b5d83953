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
//!
//! Every encoding of RFC 9669 has a method (32- and 64-bit arithmetic with the signed division and
//! modulo and the sign-extending moves, byte swaps, 32- and 64-bit jumps and `gotol`, loads and
//! stores with the sign-extending loads, the atomic operations, the legacy packet loads), and so do
//! Linux's load-acquire and store-release (6.15+). [`Asm::raw`] appends any slot, valid or not.

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

/// Arithmetic operations (`BPF_ALU`/`BPF_ALU64` op field; `Sdiv` and `Smod` are `Div` and `Mod`
/// with offset 1, 6.6+).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Alu {
    Add,
    Sub,
    Mul,
    Div,
    Sdiv,
    Or,
    And,
    Lsh,
    Rsh,
    Neg,
    Mod,
    Smod,
    Xor,
    Mov,
    Arsh,
}

impl Alu {
    /// The op field (`BPF_ADD`, …).
    pub fn code(self) -> u8 {
        match self {
            Alu::Add => 0x00,
            Alu::Sub => 0x10,
            Alu::Mul => 0x20,
            Alu::Div | Alu::Sdiv => 0x30,
            Alu::Or => 0x40,
            Alu::And => 0x50,
            Alu::Lsh => 0x60,
            Alu::Rsh => 0x70,
            Alu::Neg => 0x80,
            Alu::Mod | Alu::Smod => 0x90,
            Alu::Xor => 0xa0,
            Alu::Mov => 0xb0,
            Alu::Arsh => 0xc0,
        }
    }

    /// The offset field: 1 for the signed division and modulo, 0 otherwise.
    pub fn offset(self) -> i16 {
        i16::from(matches!(self, Alu::Sdiv | Alu::Smod))
    }
}

/// Conditional jumps (`BPF_JMP`/`BPF_JMP32` op field); `Jlt`/`Jle`/`Jslt`/`Jsle` need kernel
/// 4.14, the `BPF_JMP32` class 5.1.
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

/// Atomic operations (`BPF_STX | BPF_ATOMIC`, the operation in the immediate). `Add` alone
/// (`BPF_XADD`) is as old as eBPF; the others need 5.12.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Atomic {
    Add = 0x00,
    Or = 0x40,
    And = 0x50,
    Xor = 0xa0,
    FetchAdd = 0x01,
    FetchOr = 0x41,
    FetchAnd = 0x51,
    FetchXor = 0xa1,
    /// Exchange: `src` and memory swap.
    Xchg = 0xe1,
    /// Compare `R0` with memory, store `src` on a match; `R0` gets the old value.
    Cmpxchg = 0xf1,
}

/// Byte-order conversions (`BPF_END`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// `BPF_ALU | BPF_END | BPF_TO_LE`: between host order and little endian.
    ToLe,
    /// `BPF_ALU | BPF_END | BPF_TO_BE`: between host order and big endian.
    ToBe,
    /// `BPF_ALU64 | BPF_END`: swap unconditionally (6.6+).
    Bswap,
}

pub use loader::insn::{
    ABS, ALU, ALU64, ATOMIC, CALL, END, EXIT, IMM, IND, Insn, JA, JMP, JMP32, K, LD, LDX, LOAD_ACQ,
    MEM, MEMSX, PSEUDO_CALL, PSEUDO_FUNC, PSEUDO_MAP_FD, PSEUDO_MAP_VALUE, ST, STORE_REL, STX, X,
};

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

    /// Appends a slot from its fields, valid or not (reserved fields set, unknown opcodes).
    pub fn raw(self, code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        self.push(Insn::new(code, dst, src, off, imm))
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

    /// `dst op= imm` (64-bit; the immediate sign-extended).
    pub fn alu64_imm(self, op: Alu, dst: Reg, imm: i32) -> Self {
        self.push(Insn::new(
            ALU64 | op.code() | K,
            dst as u8,
            0,
            op.offset(),
            imm,
        ))
    }

    /// `dst op= src` (64-bit).
    pub fn alu64_reg(self, op: Alu, dst: Reg, src: Reg) -> Self {
        self.push(Insn::new(
            ALU64 | op.code() | X,
            dst as u8,
            src as u8,
            op.offset(),
            0,
        ))
    }

    /// `dst op= imm` (32-bit: the upper half of `dst` is zeroed).
    pub fn alu32_imm(self, op: Alu, dst: Reg, imm: i32) -> Self {
        self.push(Insn::new(
            ALU | op.code() | K,
            dst as u8,
            0,
            op.offset(),
            imm,
        ))
    }

    /// `dst op= src` (32-bit).
    pub fn alu32_reg(self, op: Alu, dst: Reg, src: Reg) -> Self {
        self.push(Insn::new(
            ALU | op.code() | X,
            dst as u8,
            src as u8,
            op.offset(),
            0,
        ))
    }

    /// `dst = (s8, s16, s32)src`: the low `bits` (8, 16 or 32) of `src` sign-extended to 64 bits
    /// (`BPF_MOVSX`, 6.6+).
    pub fn movsx64(self, dst: Reg, src: Reg, bits: i16) -> Self {
        self.push(Insn::new(
            ALU64 | Alu::Mov.code() | X,
            dst as u8,
            src as u8,
            bits,
            0,
        ))
    }

    /// `dst = (u32)(s32)(s8, s16)src`: the low `bits` (8 or 16) of `src` sign-extended to 32 bits,
    /// the upper half zeroed (6.6+).
    pub fn movsx32(self, dst: Reg, src: Reg, bits: i16) -> Self {
        self.push(Insn::new(
            ALU | Alu::Mov.code() | X,
            dst as u8,
            src as u8,
            bits,
            0,
        ))
    }

    /// A byte-order conversion of the low `bits` (16, 32 or 64) of `dst`.
    pub fn end(self, kind: End, dst: Reg, bits: i32) -> Self {
        let code = match kind {
            End::ToLe => ALU | END | K,
            End::ToBe => ALU | END | X,
            End::Bswap => ALU64 | END | K,
        };
        self.push(Insn::new(code, dst as u8, 0, 0, bits))
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

    /// `dst = map value + off` for the array of one element behind `fd`: an `ld_imm64` whose
    /// second slot holds the offset (`BPF_PSEUDO_MAP_VALUE`, 5.2+).
    pub fn ld_map_value(self, dst: Reg, fd: BorrowedFd<'_>, off: u32) -> Self {
        self.ld_imm64_src(
            dst,
            PSEUDO_MAP_VALUE,
            u64::from(off) << 32 | u64::from(fd.as_raw_fd() as u32),
        )
    }

    /// `dst = *(size *)(src + off)`, zero-extended.
    pub fn ldx(self, size: Size, dst: Reg, src: Reg, off: i16) -> Self {
        self.push(Insn::new(
            LDX | size as u8 | MEM,
            dst as u8,
            src as u8,
            off,
            0,
        ))
    }

    /// `dst = *(signed size *)(src + off)`, sign-extended (`BPF_MEMSX`, 6.6+; not `DW`).
    pub fn ldsx(self, size: Size, dst: Reg, src: Reg, off: i16) -> Self {
        self.push(Insn::new(
            LDX | size as u8 | MEMSX,
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

    /// The atomic operation `op` on `*(size *)(dst + off)` with `src` (`W` or `DW`); the fetching
    /// ones write the old value into `src` (`Cmpxchg`: into `R0`).
    pub fn atomic(self, size: Size, op: Atomic, dst: Reg, off: i16, src: Reg) -> Self {
        self.push(Insn::new(
            STX | size as u8 | ATOMIC,
            dst as u8,
            src as u8,
            off,
            op as i32,
        ))
    }

    /// `dst = load_acquire((size *)(src + off))`, zero-extended (6.15+).
    pub fn load_acquire(self, size: Size, dst: Reg, src: Reg, off: i16) -> Self {
        self.push(Insn::new(
            STX | size as u8 | ATOMIC,
            dst as u8,
            src as u8,
            off,
            LOAD_ACQ,
        ))
    }

    /// `store_release((size *)(dst + off), src)` (6.15+).
    pub fn store_release(self, size: Size, dst: Reg, off: i16, src: Reg) -> Self {
        self.push(Insn::new(
            STX | size as u8 | ATOMIC,
            dst as u8,
            src as u8,
            off,
            STORE_REL,
        ))
    }

    /// `R0 = *(size *)(packet + imm)` in host order (legacy packet access: `R6` holds the
    /// context, `R1`–`R5` are clobbered, a read past the packet ends the program with 0; not `DW`).
    pub fn ld_abs(self, size: Size, imm: i32) -> Self {
        self.push(Insn::new(LD | size as u8 | ABS, 0, 0, 0, imm))
    }

    /// `R0 = *(size *)(packet + src + imm)` in host order (as [`Asm::ld_abs`]).
    pub fn ld_ind(self, size: Size, src: Reg, imm: i32) -> Self {
        self.push(Insn::new(LD | size as u8 | IND, 0, src as u8, 0, imm))
    }

    /// `if dst op imm goto +off` (64-bit; the immediate sign-extended).
    pub fn jmp_imm(self, op: Jmp, dst: Reg, imm: i32, off: i16) -> Self {
        self.push(Insn::new(JMP | op as u8 | K, dst as u8, 0, off, imm))
    }

    /// `if dst op src goto +off` (64-bit).
    pub fn jmp_reg(self, op: Jmp, dst: Reg, src: Reg, off: i16) -> Self {
        self.push(Insn::new(JMP | op as u8 | X, dst as u8, src as u8, off, 0))
    }

    /// `if (u32)dst op (u32)imm goto +off` (32-bit operands, 5.1+).
    pub fn jmp32_imm(self, op: Jmp, dst: Reg, imm: i32, off: i16) -> Self {
        self.push(Insn::new(JMP32 | op as u8 | K, dst as u8, 0, off, imm))
    }

    /// `if (u32)dst op (u32)src goto +off` (32-bit operands, 5.1+).
    pub fn jmp32_reg(self, op: Jmp, dst: Reg, src: Reg, off: i16) -> Self {
        self.push(Insn::new(
            JMP32 | op as u8 | X,
            dst as u8,
            src as u8,
            off,
            0,
        ))
    }

    /// `goto +off` (unconditional).
    pub fn ja(self, off: i16) -> Self {
        self.push(Insn::new(JMP | JA, 0, 0, off, 0))
    }

    /// `gotol +imm`: an unconditional jump with a 32-bit offset (`BPF_JMP32 | BPF_JA`, 6.6+).
    pub fn gotol(self, imm: i32) -> Self {
        self.push(Insn::new(JMP32 | JA, 0, 0, 0, imm))
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
    fn rfc9669_encodings_match_the_kernel_macros() {
        let prog = Asm::new()
            .alu64_reg(Alu::Sdiv, R1, R2) // BPF_ALU64_REG_OFF(BPF_DIV, .., 1): 0x3f off 1
            .alu32_imm(Alu::Smod, R1, -1) // BPF_ALU32_IMM_OFF(BPF_MOD, .., 1): 0x94 off 1
            .alu32_imm(Alu::Mod, R1, 3) // 0x94 off 0
            .movsx64(R1, R2, 8) // BPF_MOVSX64_REG(.., 8): 0xbf off 8
            .movsx32(R1, R2, 16) // BPF_MOVSX32_REG(.., 16): 0xbc off 16
            .end(End::ToLe, R1, 16) // BPF_ENDIAN(BPF_TO_LE, .., 16): 0xd4
            .end(End::ToBe, R1, 32) // BPF_ENDIAN(BPF_TO_BE, .., 32): 0xdc
            .end(End::Bswap, R1, 64) // BPF_BSWAP(.., 64): 0xd7
            .ldsx(Size::B, R1, R2, -1) // BPF_LDX_MEMSX(BPF_B): 0x91
            .ldsx(Size::W, R1, R2, 0) // BPF_LDX_MEMSX(BPF_W): 0x81
            .atomic(Size::W, Atomic::FetchAdd, R1, 4, R2) // BPF_ATOMIC_OP(BPF_W, BPF_ADD | BPF_FETCH): 0xc3
            .atomic(Size::DW, Atomic::Cmpxchg, R1, 0, R2) // 0xdb, imm 0xf1
            .load_acquire(Size::H, R0, R1, 2) // 0xcb, imm 0x100
            .store_release(Size::B, R1, 0, R2) // 0xd3, imm 0x110
            .jmp32_reg(Jmp::Jsge, R1, R2, 1) // BPF_JMP32_REG(BPF_JSGE): 0x7e
            .jmp32_imm(Jmp::Jset, R1, 1, 1) // BPF_JMP32_IMM(BPF_JSET): 0x46
            .gotol(-3) // BPF_JMP32_A(-3): 0x06
            .ld_abs(Size::H, 12) // BPF_LD_ABS(BPF_H): 0x28
            .ld_ind(Size::W, R7, 2); // BPF_LD_IND(BPF_W): 0x40
        let fields: Vec<(u8, i16, i32)> = prog
            .insns()
            .iter()
            .map(|i| (i.code, i.off, i.imm))
            .collect();
        assert_eq!(
            fields,
            [
                (0x3f, 1, 0),
                (0x94, 1, -1),
                (0x94, 0, 3),
                (0xbf, 8, 0),
                (0xbc, 16, 0),
                (0xd4, 0, 16),
                (0xdc, 0, 32),
                (0xd7, 0, 64),
                (0x91, -1, 0),
                (0x81, 0, 0),
                (0xc3, 4, 0x01),
                (0xdb, 0, 0xf1),
                (0xcb, 2, 0x100),
                (0xd3, 0, 0x110),
                (0x7e, 1, 0),
                (0x46, 1, 1),
                (0x06, 0, -3),
                (0x28, 0, 12),
                (0x40, 0, 2),
            ]
        );
        let i = prog.insns();
        assert_eq!(
            (i[12].dst, i[12].src),
            (0, 1),
            "load-acquire: dst = *(src + off)"
        );
        assert_eq!(
            (i[18].dst, i[18].src),
            (0, 7),
            "ld_ind: the offset register in src"
        );
        assert_eq!(
            Asm::new().raw(0x8c, 1, 0, 0, 0).insns()[0].to_string(),
            "code=8c dst=r1 src=0 off=0 imm=0"
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
