//! Direct packet access (XDP, tc): every access must be inside a range the program proved
//! against `data_end`, on the path it takes; helpers that move the packet invalidate the proof.

use libbpf_rs::ProgramType;
use libbpf_rs::libbpf_sys::BPF_FUNC_xdp_adjust_head;
use testkit::insn::{Alu, Asm, Jmp, Reg::*, Size};

use super::rule::{Expect, Pat, Pat::*, RULE, Rule, loads, refused};

/// `r2 = data; r3 = data_end; r4 = data + 14` for an XDP program.
fn xdp_pointers() -> Asm {
    Asm::new()
        .ldx(Size::W, R2, R1, 0)
        .ldx(Size::W, R3, R1, 4)
        .mov64_reg(R4, R2)
        .add64_imm(R4, 14)
}

/// The same for a tc program (`__sk_buff` data at 76, data_end at 80).
fn tc_pointers() -> Asm {
    Asm::new()
        .ldx(Size::W, R2, R1, 76)
        .ldx(Size::W, R3, R1, 80)
        .mov64_reg(R4, R2)
        .add64_imm(R4, 14)
}

/// A packet read outside the range the program proved, refused with `log` among the lines. Since
/// 022ac0750883 "bpf: use reg->var_off instead of reg->off for pointers" (7.1) the check goes
/// through check_mem_region_access, whose complaint is the key line.
const fn outside_packet(log: &'static [Pat]) -> [Expect; 2] {
    [
        refused("EACCES")
            .from("7.1")
            .key(S("R2 min value is outside of the allowed memory range"))
            .log(log),
        refused("EACCES")
            .before("7.1")
            .key(S("R2 offset is outside of the packet"))
            .log(log),
    ]
}

rules! {
    /// A packet byte read with no check against `data_end`.
    packet_read_unchecked: Rule {
        prog: ProgramType::Xdp,
        insns: |_| xdp_pointers().ldx(Size::B, R0, R2, 0).exit(),
        expect: &outside_packet(&[S("invalid access to packet, off=0 size=1, R2(id=0,off=0,r=0)")]),
        ..RULE
    };

    /// `if data + 14 > data_end goto drop`, then byte 2 (2, XDP_PASS).
    packet_read_checked: Rule {
        prog: ProgramType::Xdp,
        insns: |_| xdp_pointers()
            .jmp_reg(Jmp::Jgt, R4, R3, 2)
            .ldx(Size::B, R0, R2, 2)
            .exit()
            .mov64_imm(R0, 1)
            .exit(),
        expect: &[loads().returns(2)],
        ..RULE
    };

    /// The check the other way round: `if data_end >= data + 14 goto read`.
    packet_read_checked_reversed: Rule {
        prog: ProgramType::Xdp,
        insns: |_| xdp_pointers()
            .jmp_reg(Jmp::Jge, R3, R4, 2)
            .mov64_imm(R0, 1)
            .exit()
            .ldx(Size::B, R0, R2, 2)
            .exit(),
        expect: &[loads().returns(2)],
        ..RULE
    };

    /// The check inverted: the read is on the path where the packet is too short.
    packet_read_on_failed_check: Rule {
        prog: ProgramType::Xdp,
        insns: |_| xdp_pointers()
            .jmp_reg(Jmp::Jle, R4, R3, 2)
            .ldx(Size::B, R0, R2, 2)
            .exit()
            .mov64_imm(R0, 1)
            .exit(),
        expect: &outside_packet(&[S("invalid access to packet, off=2 size=1, R2(id=0,off=2,r=0)")]),
        ..RULE
    };

    /// The check covers 14 bytes; the read is of byte 14.
    packet_read_past_checked_range: Rule {
        prog: ProgramType::Xdp,
        insns: |_| xdp_pointers()
            .jmp_reg(Jmp::Jgt, R4, R3, 2)
            .ldx(Size::B, R0, R2, 14)
            .exit()
            .mov64_imm(R0, 1)
            .exit(),
        expect: &outside_packet(&[S("invalid access to packet, off=14 size=1, R2(id=0,off=14,r=14)")]),
        ..RULE
    };

    /// The read before the check.
    packet_check_after_use: Rule {
        prog: ProgramType::Xdp,
        insns: |_| xdp_pointers()
            .ldx(Size::B, R0, R2, 2)
            .jmp_reg(Jmp::Jgt, R4, R3, 1)
            .exit()
            .mov64_imm(R0, 1)
            .exit(),
        expect: &outside_packet(&[S("invalid access to packet, off=2 size=1, R2(id=0,off=2,r=0)")]),
        ..RULE
    };

    /// Arithmetic on `data_end`.
    packet_end_arithmetic: Rule {
        prog: ProgramType::Xdp,
        insns: |_| xdp_pointers().add64_imm(R3, 1).mov64_imm(R0, 2).exit(),
        expect: &[refused("EACCES").key(S("R3 pointer arithmetic on pkt_end prohibited"))],
        ..RULE
    };

    /// `bpf_xdp_adjust_head` moves the packet: a pointer checked before the call is a number
    /// after it.
    packet_pointer_invalidated_by_helper: Rule {
        prog: ProgramType::Xdp,
        insns: |_| Asm::new()
            .mov64_reg(R6, R1)
            .append(&xdp_pointers())
            .jmp_reg(Jmp::Jgt, R4, R3, 6)
            .mov64_reg(R7, R2)
            .mov64_reg(R1, R6)
            .mov64_imm(R2, 0)
            .call(BPF_FUNC_xdp_adjust_head)
            .ldx(Size::B, R0, R7, 2)
            .exit()
            .mov64_imm(R0, 1)
            .exit(),
        expect: &[refused("EACCES").key(Re(r"R7 invalid mem access '(inv|scalar)'"))],
        ..RULE
    };

    /// A tc program writes a checked packet byte and reads it back (0x55).
    packet_write_tc: Rule {
        prog: ProgramType::SchedCls,
        insns: |_| tc_pointers()
            .jmp_reg(Jmp::Jgt, R4, R3, 3)
            .st_imm(Size::B, R2, 0, 0x55)
            .ldx(Size::B, R0, R2, 0)
            .exit()
            .mov64_imm(R0, 2)
            .exit(),
        expect: &[loads().returns(0x55)],
        ..RULE
    };

    /// A packet pointer moved by a number the verifier only knows the bounds of (the ingress
    /// ifindex `& 7`) and checked after the move: it tracks the variable offset. The test run's
    /// packet arrives on loopback (ifindex 1): byte 1.
    packet_variable_offset_checked: Rule {
        prog: ProgramType::Xdp,
        insns: |_| xdp_pointers()
            .ldx(Size::W, R5, R1, 12)
            .alu64_imm(Alu::And, R5, 7)
            .alu64_reg(Alu::Add, R2, R5)
            .mov64_reg(R4, R2)
            .add64_imm(R4, 1)
            .jmp_reg(Jmp::Jgt, R4, R3, 2)
            .ldx(Size::B, R0, R2, 0)
            .exit()
            .mov64_imm(R0, 1)
            .exit(),
        expect: &[loads().returns(1)],
        ..RULE
    };
}
