//! Control flow and encoding: what `check_cfg` and the instruction decoder refuse before the
//! verifier walks a path, and the log buffer's growth.

use testkit::LogLevel;
use testkit::insn::{Asm, Insn, Reg::*};

use super::rule::{Pat::*, RULE, Rule, loads, refused};

rules! {
    /// Instructions after the last `exit` that no path reaches.
    unreachable_instruction: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 0).exit().mov64_imm(R0, 1).exit(),
        expect: &[refused("EINVAL").key(S("unreachable insn 2"))],
        ..RULE
    };

    /// A jump past the end of the program.
    jump_out_of_range: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 0).ja(5).exit(),
        expect: &[refused("EINVAL").key(S("jump out of range from insn 1 to 7"))],
        ..RULE
    };

    /// The program falls off its end.
    last_insn_not_exit: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 0).mov64_imm(R0, 1),
        expect: &[refused("EINVAL").key(S("last insn is not an exit or jmp"))],
        ..RULE
    };

    /// `r0 = 0` with a source register set: fields an instruction does not use must be zero.
    mov_with_reserved_field: Rule {
        insns: |_| Asm::new().push(Insn::new(0xb7, 0, 1, 0, 0)).exit(),
        expect: &[refused("EINVAL").key(S("BPF_MOV uses reserved fields"))],
        ..RULE
    };

    /// An opcode no instruction has (ALU64 op 0xf0).
    unknown_opcode: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 0).push(Insn::new(0xff, 0, 0, 0, 0)).exit(),
        expect: &[refused("EINVAL").key(S("unknown opcode ff"))],
        ..RULE
    };

    /// `bswap16 r0` (ALU64 | END, the cpu v4 set): 0x1234 becomes 0x3412. Older kernels do not
    /// know the opcode (`unknown opcode d7`).
    byte_swap_v4: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 0x1234).push(Insn::new(0xd7, 0, 0, 0, 16)).exit(),
        needs: &[super::rule::Need { id: "isa.v4", absent: S("unknown opcode d7") }],
        expect: &[loads().returns(0x3412)],
        ..RULE
    };

    /// A valid program at log level 2 with a 128-byte log buffer: the first load answers ENOSPC,
    /// the harness grows the buffer and the retry loads. (Level 2: newer kernels keep only the
    /// statistics of an accepted program's level-1 log.)
    log_buffer_too_small: Rule {
        insns: |_| Asm::new().mov64_imm(R0, 3).exit(),
        level: LogLevel::Full,
        log_size: testkit::raw_load::MIN_LOG_SIZE,
        expect: &[loads()
            .log(&[S("(b7) r0 = 3"), S("processed 2 insns")])
            .first_attempt("ENOSPC")
            .returns(3)],
        ..RULE
    };
}
