//! Loops: a back-edge is walked as often as it is taken (5.3+), until the state repeats (an
//! infinite loop) or the walk grows past the complexity limits.

use libbpf_rs::libbpf_sys::BPF_FUNC_get_prandom_u32;
use testkit::LogLevel;
use testkit::insn::{Alu, Asm, Jmp, Reg::*};

use super::rule::{Need, Pat::*, RULE, Rule, loads, refused};

/// `r0 = 0; do r0 += 1 while (r0 < to)`.
fn counting_loop(to: i32) -> Asm {
    Asm::new()
        .mov64_imm(R0, 0)
        .add64_imm(R0, 1)
        .jmp_imm(Jmp::Jlt, R0, to, -2)
        .exit()
}

/// The instructions of [`long_body`]. The loops that walk to the million-instruction limit do it
/// in fewer iterations with a long body, so with fewer verifier states: 6.12 compares each new
/// state of a loop head with every one before it (with a 3-instruction body: 25,001 states, 90 s
/// a rule under emulation; with this one 4,950 and 9,803 states, 2 s).
const LONG_BODY: i16 = 100;

/// `r0 += 1`, then `r1 = r0` until the body is [`LONG_BODY`] instructions long.
fn long_body(asm: Asm) -> Asm {
    (1..LONG_BODY).fold(asm.add64_imm(R0, 1), |asm, _| asm.mov64_reg(R1, R0))
}

/// How a kernel without bounded loops (5.3) refuses any: `check_cfg` sees a back-edge.
const NEEDS_BOUNDED_LOOPS: &[Need] = &[Need {
    id: "verifier.bounded_loops",
    absent: S("back-edge"),
}];

rules! {
    /// A jump to itself whose condition always holds: the verifier finds the same state twice
    /// (before 5.3, check_cfg refuses every back-edge: "back-edge from insn 1 to 1").
    back_edge_rejected: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 0).jmp_imm(Jmp::Jne, R0, 1, -1).exit(),
        expect: &[refused("EINVAL").key(S("infinite loop detected at insn 1"))],
        ..RULE
    };

    /// `r0 = 0; do r0 += 1 while (r0 < 10)`: the verifier walks all ten iterations.
    bounded_loop_accepted: Rule {
        insns: |_| counting_loop(10),
        level: LogLevel::Full,
        needs: NEEDS_BOUNDED_LOOPS,
        expect: &[loads().log(&[S("processed")]).returns(10)],
        ..RULE
    };

    /// Two nested loops of four iterations: 16.
    nested_loops: Rule {
        insns: |_| Asm::new()
            .mov64_imm(R0, 0)
            .mov64_imm(R1, 0)
            .mov64_imm(R2, 0)
            .add64_imm(R0, 1)
            .add64_imm(R2, 1)
            .jmp_imm(Jmp::Jlt, R2, 4, -3)
            .add64_imm(R1, 1)
            .jmp_imm(Jmp::Jlt, R1, 4, -6)
            .exit(),
        needs: NEEDS_BOUNDED_LOOPS,
        expect: &[loads().returns(16)],
        ..RULE
    };

    /// A loop bounded by a random number masked to 0–15: the verifier walks every count (the
    /// program returns the counter minus the bound, 0).
    loop_bounded_by_masked_unknown: Rule {
        insns: |_| Asm::new()
            .call(BPF_FUNC_get_prandom_u32)
            .mov64_reg(R6, R0)
            .alu64_imm(Alu::And, R6, 15)
            .mov64_imm(R0, 0)
            .jmp_reg(Jmp::Jge, R0, R6, 2)
            .add64_imm(R0, 1)
            .ja(-3)
            .alu64_reg(Alu::Sub, R0, R6)
            .exit(),
        needs: NEEDS_BOUNDED_LOOPS,
        expect: &[loads().returns(0)],
        ..RULE
    };

    /// A loop that ends when a counter meets a random 32-bit number: every iteration is a new
    /// state and a new branch, until the verifier gives up at a million instructions.
    loop_bounded_by_unknown: Rule {
        insns: |_| long_body(
            Asm::new()
                .call(BPF_FUNC_get_prandom_u32)
                .mov64_reg(R6, R0)
                .mov64_imm(R0, 0),
        )
        .jmp_reg(Jmp::Jne, R0, R6, -(LONG_BODY + 1))
        .exit(),
        level: LogLevel::Stats,
        needs: NEEDS_BOUNDED_LOOPS,
        expect: &[refused("E2BIG").key(S("BPF program is too large. Processed 1000001 insn"))],
        ..RULE
    };

    /// A loop of a million iterations of a hundred instructions: the verifier gives up after a
    /// million processed instructions. At level 1 the log would hold every one of them:
    /// statistics only.
    too_many_processed_insns: Rule {
        insns: |_| long_body(Asm::new().mov64_imm(R0, 0))
            .jmp_imm(Jmp::Jlt, R0, 1_000_000, -(LONG_BODY + 1))
            .exit(),
        level: LogLevel::Stats,
        needs: NEEDS_BOUNDED_LOOPS,
        expect: &[refused("E2BIG").key(S("BPF program is too large. Processed 1000001 insn"))],
        ..RULE
    };
}
