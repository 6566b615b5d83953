//! Map values: NULL checks, bounds (fixed and variable offsets), read-only maps, map pointers.

use std::os::fd::AsFd;

use libbpf_rs::libbpf_sys::{BPF_FUNC_map_lookup_elem, BPF_FUNC_map_update_elem};
use testkit::LogLevel;
use testkit::insn::{Alu, Asm, Jmp, PSEUDO_MAP_FD, Reg::*, Size};

use super::rule::{Fixture, Pat::*, RULE, Rule, STORED, loads, lookup, refused};

/// A read of the array's value at a variable offset bounded by `& 1`: the first byte of 0x1234
/// (0x34).
fn masked_offset_read(f: &Fixture) -> Asm {
    lookup(f.array.as_fd())
        .jmp_imm(Jmp::Jeq, R0, 0, 5)
        .ldx(Size::DW, R1, R0, 0)
        .alu64_imm(Alu::And, R1, 1)
        .alu64_reg(Alu::Add, R0, R1)
        .ldx(Size::B, R0, R0, 0)
        .exit()
        .mov64_imm(R0, 0)
        .exit()
}

rules! {
    /// A read of 8 bytes at offset 8 of an 8-byte array value, after the NULL check.
    map_value_out_of_bounds: Rule {
        insns: |f| lookup(f.array.as_fd())
            .jmp_imm(Jmp::Jeq, R0, 0, 1)
            .ldx(Size::DW, R0, R0, 8)
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[refused("EACCES")
            .key(S("outside of the allowed memory range"))
            .log(&[S("invalid access to map value, value_size=8 off=8 size=8")])],
        ..RULE
    };

    /// A read 8 bytes before the value.
    map_value_negative_offset: Rule {
        insns: |f| lookup(f.array.as_fd())
            .jmp_imm(Jmp::Jeq, R0, 0, 1)
            .ldx(Size::DW, R0, R0, -8)
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[refused("EACCES")
            .log(&[S("invalid access to map value, value_size=8 off=-8 size=8")])],
        ..RULE
    };

    /// A hash lookup and an in-bounds read, with the NULL check: accepted, returns what user
    /// space stored.
    map_value_checked_accepted: Rule {
        insns: |f| lookup(f.hash.as_fd())
            .jmp_imm(Jmp::Jeq, R0, 0, 2)
            .ldx(Size::DW, R0, R0, 0)
            .exit()
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[loads().log(&[S("processed")]).returns(STORED as u32)],
        ..RULE
    };

    /// A hash lookup's result dereferenced without the NULL check.
    null_map_value_deref: Rule {
        insns: |f| lookup(f.hash.as_fd()).ldx(Size::DW, R0, R0, 0).mov64_imm(R0, 0).exit(),
        level: LogLevel::Full,
        expect: &[refused("EACCES").key(S("R0 invalid mem access 'map_value_or_null'"))],
        ..RULE
    };

    /// The NULL check on a copy of the lookup's result also proves the original.
    null_check_through_copy: Rule {
        insns: |f| lookup(f.hash.as_fd())
            .mov64_reg(R1, R0)
            .jmp_imm(Jmp::Jeq, R1, 0, 2)
            .ldx(Size::DW, R0, R0, 0)
            .exit()
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[loads().returns(STORED as u32)],
        ..RULE
    };

    /// An array lookup with a constant key inside the array, used without a NULL check: newer
    /// kernels know it cannot fail (d2102f2f5d75 "bpf: verifier: Support eliding map lookup
    /// nullness", 6.14).
    array_lookup_constant_key_unchecked: Rule {
        insns: |f| lookup(f.array.as_fd()).ldx(Size::DW, R0, R0, 0).exit(),
        expect: &[
            loads().from("6.14").returns(STORED as u32),
            // 5.10, 6.1, 6.12: refused as any lookup, from their source; unverified.
            refused("EACCES").before("6.14").key(S("R0 invalid mem access 'map_value_or_null'")),
        ],
        ..RULE
    };

    /// A variable offset bounded by `& 1` into the value: the first byte of 0x1234 (0x34).
    map_value_masked_offset: Rule {
        insns: masked_offset_read,
        expect: &[loads().returns(0x34)],
        ..RULE
    };

    /// A variable offset with no bound.
    map_value_unbounded_offset: Rule {
        insns: |f| lookup(f.array.as_fd())
            .jmp_imm(Jmp::Jeq, R0, 0, 4)
            .ldx(Size::DW, R1, R0, 0)
            .alu64_reg(Alu::Add, R0, R1)
            .ldx(Size::B, R0, R0, 0)
            .exit()
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[refused("EINVAL").key(S(
            "math between map_value pointer and register with unbounded min value is not allowed"
        ))],
        ..RULE
    };

    /// The masked offset, unprivileged: accepted, and the verifier adds instructions that keep a
    /// mispredicted path inside the value (see the translated instructions).
    map_value_masked_offset_unpriv: Rule {
        insns: masked_offset_read,
        unprivileged: true,
        expect: &[loads().returns(0x34)],
        ..RULE
    };

    /// `bpf_map_update_elem` from the program, then a lookup: the value written (0x77).
    map_update_then_lookup: Rule {
        insns: |f| Asm::new()
            .st_imm(Size::W, R10, -4, 0)
            .st_imm(Size::DW, R10, -16, 0x77)
            .mov64_reg(R2, R10)
            .add64_imm(R2, -4)
            .mov64_reg(R3, R10)
            .add64_imm(R3, -16)
            .mov64_imm(R4, 0)
            .ld_map_fd(R1, f.array.as_fd())
            .call(BPF_FUNC_map_update_elem)
            .mov64_reg(R2, R10)
            .add64_imm(R2, -4)
            .ld_map_fd(R1, f.array.as_fd())
            .call(BPF_FUNC_map_lookup_elem)
            .jmp_imm(Jmp::Jeq, R0, 0, 2)
            .ldx(Size::DW, R0, R0, 0)
            .exit()
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[loads().returns(0x77)],
        ..RULE
    };

    /// A store into the value of a map the programs may only read (`BPF_F_RDONLY_PROG`).
    read_only_map_write: Rule {
        insns: |f| lookup(f.read_only())
            .jmp_imm(Jmp::Jeq, R0, 0, 1)
            .st_imm(Size::DW, R0, 0, 1)
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[refused("EACCES").key(S("write into map forbidden, value_size=8 off=0 size=8"))],
        ..RULE
    };

    /// A read from the value of a read-only map: allowed (0x1234).
    read_only_map_read: Rule {
        insns: |f| lookup(f.read_only())
            .jmp_imm(Jmp::Jeq, R0, 0, 2)
            .ldx(Size::DW, R0, R0, 0)
            .exit()
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[loads().returns(STORED as u32)],
        ..RULE
    };

    /// Arithmetic on a map pointer.
    map_pointer_arithmetic: Rule {
        insns: |f| Asm::new()
            .ld_map_fd(R1, f.array.as_fd())
            .add64_imm(R1, 8)
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[refused("EACCES").key(S("R1 pointer arithmetic on map_ptr prohibited"))],
        ..RULE
    };

    /// A map load whose fd is no open file.
    map_fd_invalid: Rule {
        insns: |_| Asm::new()
            .ld_imm64_pseudo(R1, PSEUDO_MAP_FD, i32::MAX)
            .mov64_imm(R0, 0)
            .exit(),
        expect: &[refused("EBADF").key(S("fd 2147483647 is not pointing to valid bpf_map"))],
        ..RULE
    };
}
