//! The reference model: every operation as RFC 9669 defines it, written from the RFC's text (its
//! tables and the sentences under them), not from any implementation. The cases compute their
//! expected values here; the results the RFC states literally are asserted against this model too
//! (`Sub::literal`), so a wrong model cannot hide a wrong kernel.
//!
//! Values are the registers' 64 bits; a 32-bit operation reads the low halves of its operands and
//! writes its result zero-extended ("where '(u32)' indicates that the upper 32 bits are zeroed",
//! §4.1). Memory is bytes in the host's order (§3.1: multi-byte fields follow the host).

use testkit::insn::{Alu, Atomic, End, Jmp, Size};

/// The operand width: `ALU`/`JMP32` (32 bits) or `ALU64`/`JMP` (64 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    W32,
    W64,
}

/// An immediate as a source operand: "signed integer immediate value" (§3.1), sign-extended to
/// 64 bits for `ALU64`/`JMP` (§4.1: `dst = (s64)imm`, `if dst <= (u64)(s64)imm`); the 32-bit
/// forms use its low 32 bits, which are the same either way.
pub fn imm(imm: i32) -> u64 {
    i64::from(imm) as u64
}

/// `dst op src` of the arithmetic table (§4.1), with the division, modulo and shift rules under it.
pub fn alu(op: Alu, width: Width, dst: u64, src: u64) -> u64 {
    match width {
        Width::W64 => alu64(op, dst, src),
        Width::W32 => u64::from(alu32(op, dst as u32, src as u32)),
    }
}

fn alu64(op: Alu, dst: u64, src: u64) -> u64 {
    let (sdst, ssrc) = (dst as i64, src as i64);
    match op {
        Alu::Add => dst.wrapping_add(src),
        Alu::Sub => dst.wrapping_sub(src),
        Alu::Mul => dst.wrapping_mul(src),
        // "dst = (src != 0) ? (dst / src) : 0"
        Alu::Div => dst.checked_div(src).unwrap_or(0),
        // "dst = (src == 0) ? 0 : ((src == -1 && dst == LLONG_MIN) ? LLONG_MIN : (dst s/ src))"
        Alu::Sdiv if ssrc == 0 => 0,
        Alu::Sdiv if ssrc == -1 && sdst == i64::MIN => i64::MIN as u64,
        Alu::Sdiv => truncated_div(sdst, ssrc) as u64,
        Alu::Or => dst | src,
        Alu::And => dst & src,
        // "Shift operations use a mask of 0x3F (63) for 64-bit operations"
        Alu::Lsh => dst << (src & 0x3f),
        Alu::Rsh => dst >> (src & 0x3f),
        Alu::Arsh => sign_extending_shift(dst, src & 0x3f, 64),
        Alu::Neg => 0u64.wrapping_sub(dst),
        // "dst = (src != 0) ? (dst % src) : dst"
        Alu::Mod => dst.checked_rem(src).unwrap_or(dst),
        // "dst = (src == 0) ? dst : ((src == -1 && dst == LLONG_MIN) ? 0: (dst s% src))"
        Alu::Smod if ssrc == 0 => dst,
        Alu::Smod if ssrc == -1 && sdst == i64::MIN => 0,
        Alu::Smod => truncated_mod(sdst, ssrc) as u64,
        Alu::Xor => dst ^ src,
        Alu::Mov => src,
    }
}

fn alu32(op: Alu, dst: u32, src: u32) -> u32 {
    let (sdst, ssrc) = (dst as i32, src as i32);
    match op {
        Alu::Add => dst.wrapping_add(src),
        Alu::Sub => dst.wrapping_sub(src),
        Alu::Mul => dst.wrapping_mul(src),
        Alu::Div => dst.checked_div(src).unwrap_or(0),
        // "For ALU, if execution would result in INT_MIN divided by -1, the destination register
        // is instead set to INT_MIN."
        Alu::Sdiv if ssrc == 0 => 0,
        Alu::Sdiv if ssrc == -1 && sdst == i32::MIN => i32::MIN as u32,
        Alu::Sdiv => truncated_div(i64::from(sdst), i64::from(ssrc)) as u32,
        Alu::Or => dst | src,
        Alu::And => dst & src,
        // "… and 0x1F (31) for 32-bit operations."
        Alu::Lsh => dst << (src & 0x1f),
        Alu::Rsh => dst >> (src & 0x1f),
        Alu::Arsh => sign_extending_shift(u64::from(dst), u64::from(src & 0x1f), 32) as u32,
        Alu::Neg => 0u32.wrapping_sub(dst),
        // Modulo by zero: "for ALU the upper 32 bits of the destination register are zeroed" —
        // the low half is kept, which the zero-extension of the result does.
        Alu::Mod => dst.checked_rem(src).unwrap_or(dst),
        Alu::Smod if ssrc == 0 => dst,
        Alu::Smod if ssrc == -1 && sdst == i32::MIN => 0,
        Alu::Smod => truncated_mod(i64::from(sdst), i64::from(ssrc)) as u32,
        Alu::Xor => dst ^ src,
        Alu::Mov => src,
    }
}

/// `a s/ n` rounded toward zero (C's division, which the RFC's modulo formula builds on).
fn truncated_div(a: i64, n: i64) -> i64 {
    let q = a.unsigned_abs() / n.unsigned_abs();
    if (a < 0) != (n < 0) {
        0i64.wrapping_sub_unsigned(q)
    } else {
        q as i64
    }
}

/// "a % n = a - n * trunc(a / n)" (§4.1: signed modulo MUST use truncated division).
fn truncated_mod(a: i64, n: i64) -> i64 {
    a.wrapping_sub(n.wrapping_mul(truncated_div(a, n)))
}

/// A right shift of the low `bits` of `value` by `by` whose vacated bits copy the sign bit
/// ("sign extending dst >>= (src & mask)").
fn sign_extending_shift(value: u64, by: u64, bits: u32) -> u64 {
    let sign = value >> (bits - 1) & 1 == 1;
    let shifted = value >> by;
    let filled = if sign && by > 0 {
        // The top `by` bits of the `bits`-wide value.
        let ones = u64::MAX >> (64 - bits);
        ones & !(ones >> by)
    } else {
        0
    };
    shifted | filled
}

/// `MOVSX` (§4.1): the low `bits` of `src` sign-extended; `ALU` sign-extends into 32 bits and
/// zeroes the upper half ("dst = (u32)(s32)(s8)src").
pub fn movsx(width: Width, bits: u32, src: u64) -> u64 {
    let value = sign_extend(src, bits);
    match width {
        Width::W64 => value,
        Width::W32 => value & 0xffff_ffff,
    }
}

/// The low `bits` of `value` sign-extended to 64 bits (§2.3, "Sign Extend").
pub fn sign_extend(value: u64, bits: u32) -> u64 {
    let shift = 64 - bits;
    (((value << shift) as i64) >> shift) as u64
}

/// The low `bits` of `value`.
pub fn truncate(value: u64, bits: u32) -> u64 {
    if bits == 64 {
        value
    } else {
        value & ((1 << bits) - 1)
    }
}

/// The byte-swap instructions (§4.2). Each function "takes an unsigned N-bit number" (the low
/// `bits` of `dst`) and returns a number of that width: le/be convert between the host's order and
/// the named one (a swap only where they differ), bswap swaps unconditionally.
pub fn end(kind: End, bits: u32, dst: u64) -> u64 {
    let value = truncate(dst, bits);
    let swapped = match bits {
        16 => u64::from((value as u16).swap_bytes()),
        32 => u64::from((value as u32).swap_bytes()),
        _ => value.swap_bytes(),
    };
    let host_is_little = cfg!(target_endian = "little");
    match kind {
        End::ToLe if host_is_little => value,
        End::ToBe if !host_is_little => value,
        _ => swapped,
    }
}

/// Whether the conditional jump `op` is taken (§4.3): "unsigned" and "signed" comparisons of the
/// 64-bit operands, or of their low halves for `JMP32`.
pub fn jump(op: Jmp, width: Width, dst: u64, src: u64) -> bool {
    let (dst, src, sdst, ssrc) = match width {
        Width::W64 => (dst, src, dst as i64, src as i64),
        Width::W32 => (
            truncate(dst, 32),
            truncate(src, 32),
            i64::from(dst as u32 as i32),
            i64::from(src as u32 as i32),
        ),
    };
    match op {
        Jmp::Jeq => dst == src,
        Jmp::Jne => dst != src,
        Jmp::Jset => dst & src != 0,
        Jmp::Jgt => dst > src,
        Jmp::Jge => dst >= src,
        Jmp::Jlt => dst < src,
        Jmp::Jle => dst <= src,
        Jmp::Jsgt => sdst > ssrc,
        Jmp::Jsge => sdst >= ssrc,
        Jmp::Jslt => sdst < ssrc,
        Jmp::Jsle => sdst <= ssrc,
    }
}

/// The access width of `size` in bytes (§5: W 4, H 2, B 1, DW 8).
pub fn bytes(size: Size) -> usize {
    match size {
        Size::B => 1,
        Size::H => 2,
        Size::W => 4,
        Size::DW => 8,
    }
}

/// `*(unsigned size *)(memory + at)` (§5.1: `LDX` zero-extends).
pub fn load(size: Size, memory: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    let n = bytes(size);
    if cfg!(target_endian = "little") {
        word[..n].copy_from_slice(&memory[at..at + n]);
    } else {
        word[8 - n..].copy_from_slice(&memory[at..at + n]);
    }
    u64::from_ne_bytes(word)
}

/// `*(signed size *)(memory + at)` (§5.2).
pub fn load_signed(size: Size, memory: &[u8], at: usize) -> u64 {
    sign_extend(load(size, memory, at), 8 * bytes(size) as u32)
}

/// `*(size *)(memory + at) = value`: the low `size` bytes of `value` (§5.1).
pub fn store(size: Size, memory: &mut [u8], at: usize, value: u64) {
    let n = bytes(size);
    let word = value.to_ne_bytes();
    if cfg!(target_endian = "little") {
        memory[at..at + n].copy_from_slice(&word[..n]);
    } else {
        memory[at..at + n].copy_from_slice(&word[8 - n..]);
    }
}

/// What an atomic operation leaves (§5.3): memory is changed in place; the source register and
/// `R0` after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AtomicResult {
    pub src: u64,
    pub r0: u64,
}

/// The atomic operation `op` of width `size` (`W` or `DW`) on `memory[at..]` with `src`, and `R0`
/// for `CMPXCHG`. The simple operations apply `op` with `src` (its low half for `W`); `FETCH`
/// "overwrites src with the value that was in memory before it was modified"; `XCHG` exchanges;
/// `CMPXCHG` "compares the value addressed by dst + offset with R0" — for `W` the RFC does not say
/// which bits of `R0`, so the cases keep its upper half zero and compare its low 32 bits — stores
/// `src` on a match, and in either case loads the old value "zero-extended" into `R0`.
pub fn atomic(
    op: Atomic,
    size: Size,
    memory: &mut [u8],
    at: usize,
    src: u64,
    r0: u64,
) -> AtomicResult {
    let bits = 8 * bytes(size) as u32;
    let old = load(size, memory, at);
    let operand = truncate(src, bits);
    let new = match op {
        Atomic::Add | Atomic::FetchAdd => old.wrapping_add(operand),
        Atomic::Or | Atomic::FetchOr => old | operand,
        Atomic::And | Atomic::FetchAnd => old & operand,
        Atomic::Xor | Atomic::FetchXor => old ^ operand,
        Atomic::Xchg => operand,
        Atomic::Cmpxchg if old == truncate(r0, bits) => operand,
        Atomic::Cmpxchg => old,
    };
    store(size, memory, at, truncate(new, bits));
    let fetches = matches!(
        op,
        Atomic::FetchAdd | Atomic::FetchOr | Atomic::FetchAnd | Atomic::FetchXor | Atomic::Xchg
    );
    AtomicResult {
        src: if fetches { old } else { src },
        r0: if op == Atomic::Cmpxchg { old } else { r0 },
    }
}

/// The legacy packet load of `size` at `at` (§5.5 defines only the encoding; its meaning is
/// Linux's, Documentation/bpf/linux-notes.rst: `R0 = ntohl(*(u32 *)(data + imm))`, the bytes in
/// network order): `None` when it reads past the packet, which "aborts" the program.
pub fn packet_load(size: Size, packet: &[u8], at: usize) -> Option<u64> {
    let n = bytes(size);
    let field = packet.get(at..at + n)?;
    Some(field.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b)))
}
