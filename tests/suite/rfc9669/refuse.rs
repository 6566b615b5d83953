//! What the verifier refuses (§3.1: "Unused fields SHALL be cleared to zero"): encodings with an
//! unused field set, opcodes the RFC does not define, and what Linux refuses at load although the
//! RFC gives it a result — division and modulo by an immediate zero (the RFC: 0, and the
//! destination unchanged; Linux: "div by zero" before the program runs; by a register holding zero
//! it computes the RFC's results, `divmul::*`) and immediate shift amounts past the width (the RFC
//! masks them; Linux: "invalid shift").
//!
//! Each case loads one program per encoding (`r0 = 0; r2 = 1; r6 = r1; <encoding>; exit`) and
//! checks the verdict, the errno and the verifier's key line against what the kernel sources say
//! for the running kernel's release (5.10.223, 6.1.176, 6.12.117 and 7.3.4 as Debian ships them:
//! 7.3 checks every instruction's fields before the verifier walks the program, older kernels as
//! they reach it; the key lines are the same). The table of verdicts is snapshotted per kernel.
//! One encoding is not refused, and the case says so: `EXIT` with a non-zero offset (no Linux
//! release checks `EXIT`'s offset; the RFC's "SHALL" binds whoever writes the instruction).
//!
//! Longer than the suite's ~600 lines on purpose: one table per instruction class, all judged by
//! one `check`; the tables are the whole content.

use libbpf_rs::ProgramType;
use serde_json::json;
use testkit::floors::Version;
use testkit::insn::{Asm, Insn, Reg::*};
use testkit::raw_load::RawProgram;
use testkit::{Case, CaseError, Kernel, LogLevel};

use super::run;

/// What a range of kernels does with an encoding.
#[derive(Clone, Copy)]
struct Expect {
    /// First release of the range (`None`: from the beginning).
    from: Option<&'static str>,
    /// First release past it (`None`: to this day).
    before: Option<&'static str>,
    /// `None`: loads; else the errno and a phrase of the key line.
    refused: Option<(&'static str, &'static str)>,
}

const fn everywhere(errno: &'static str, key: &'static str) -> Expect {
    Expect {
        from: None,
        before: None,
        refused: Some((errno, key)),
    }
}

const fn range(
    from: Option<&'static str>,
    before: Option<&'static str>,
    key: &'static str,
) -> Expect {
    Expect {
        from,
        before,
        refused: Some(("EINVAL", key)),
    }
}

impl Expect {
    fn holds(&self, version: Version) -> bool {
        let parse = |v: &str| Version::parse(v).unwrap_or_else(|| panic!("release {v:?}"));
        self.from.is_none_or(|from| version.at_least(parse(from)))
            && self
                .before
                .is_none_or(|before| !version.at_least(parse(before)))
    }
}

/// One encoding and what each range of kernels does with it.
struct Encoding<'a> {
    name: &'static str,
    /// What the RFC says about it (its section).
    rfc: &'static str,
    /// The encoding's slots (two for `ld_imm64`).
    slots: &'a [(u8, u8, u8, i16, i32)],
    expect: &'a [Expect],
}

/// Loads every encoding of `table` and checks each against its expectation for this kernel.
fn check(what: &'static str, table: &[Encoding]) {
    Case::run(ProgramType::SocketFilter, |case| {
        let snapshot_name = case.snapshot_name("refusals");
        let kernel = Kernel::current();
        let version = Version::of_kernel(&kernel.release, &kernel.build).ok_or_else(|| {
            CaseError::Error(anyhow::anyhow!(
                "the release of this kernel ({}) cannot be read, so the expectation cannot be chosen",
                kernel.release
            ))
        })?;
        let mut results = Vec::new();
        let mut view = Vec::new();
        let mut wrong = Vec::new();
        for encoding in table {
            let expect = encoding
                .expect
                .iter()
                .find(|e| e.holds(version))
                .unwrap_or_else(|| panic!("{}: no expectation for {version}", encoding.name));
            let mut asm = Asm::new()
                .mov64_imm(R0, 0)
                .mov64_imm(R2, 1)
                .mov64_reg(R6, R1);
            for &(code, dst, src, off, imm) in encoding.slots {
                asm = asm.raw(code, dst, src, off, imm);
            }
            if encoding.slots[0].0 != 0x95 {
                asm = asm.exit();
            }
            let load = RawProgram::new("rfc9669", ProgramType::SocketFilter, asm.to_bpf())
                .log_level(LogLevel::Verbose)
                .load();
            let outcome = &load.outcome;
            let key = outcome.message.clone().unwrap_or_default();
            let ok = match expect.refused {
                None => outcome.loaded,
                Some((errno, phrase)) => {
                    !outcome.loaded
                        && outcome.errno.as_deref() == Some(errno)
                        && key.contains(phrase)
                }
            };
            let insn = encoding
                .slots
                .iter()
                .map(|&(c, d, s, o, i)| Insn::new(c, d, s, o, i).to_string())
                .collect::<Vec<_>>()
                .join(" ; ");
            let expected = match expect.refused {
                None => json!({"loaded": true}),
                Some((errno, phrase)) => json!({"loaded": false, "errno": errno, "key": phrase}),
            };
            let observed =
                json!({"loaded": outcome.loaded, "errno": outcome.errno, "key": outcome.message});
            if !ok {
                wrong.push(format!(
                    "{} ({insn}): expected {expected}, observed {observed}",
                    encoding.name
                ));
            }
            view.push(json!({
                "encoding": encoding.name,
                "insn": insn,
                "loaded": outcome.loaded,
                "errno": outcome.errno,
                "key": outcome.message.as_deref().map(testkit::raw_load::redact_log),
            }));
            results.push(json!({
                "name": encoding.name,
                "rfc": encoding.rfc,
                "insn": insn,
                "expected": expected,
                "observed": observed,
                "ok": ok,
            }));
            case.push_load(load.outcome.clone());
        }
        case.detail(
            "rfc9669",
            json!({
                "instruction": what,
                "group": "encoding",
                "sections": ["3.1"],
                "engine": run::engine(),
                "subcases": table.len(),
                "failed": wrong.len(),
                "results": results,
            }),
        );
        case.snapshot(&snapshot_name, &view);
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(CaseError::Fail(anyhow::anyhow!(
                "{} of {} encodings ({what}) are not treated as the kernel's sources say:\n  {}",
                wrong.len(),
                table.len(),
                wrong.join("\n  ")
            )))
        }
    });
}

const ALU: &str = "BPF_ALU uses reserved fields";
const MOV: &str = "BPF_MOV uses reserved fields";

#[test]
fn refuse_alu_fields() {
    check(
        "unused fields of arithmetic instructions",
        &[
            Encoding {
                name: "ADD (ALU64) K with src_reg 1",
                rfc: "3.1: unused fields SHALL be zero",
                slots: &[(0x07, 2, 1, 0, 1)],
                expect: &[everywhere("EINVAL", ALU)],
            },
            Encoding {
                name: "ADD (ALU64) X with imm 1",
                rfc: "3.1",
                slots: &[(0x0f, 2, 2, 0, 1)],
                expect: &[everywhere("EINVAL", ALU)],
            },
            Encoding {
                name: "ADD (ALU) K with offset 1 (only SDIV, SMOD and MOVSX have an offset)",
                rfc: "4.1",
                slots: &[(0x04, 2, 0, 1, 1)],
                expect: &[everywhere("EINVAL", ALU)],
            },
            Encoding {
                name: "DIV (ALU64) X with offset 2",
                rfc: "4.1: offset 0 (DIV) or 1 (SDIV)",
                slots: &[(0x3f, 2, 2, 2, 0)],
                expect: &[everywhere("EINVAL", ALU)],
            },
            Encoding {
                name: "MOV (ALU64) K with src_reg 1",
                rfc: "3.1",
                slots: &[(0xb7, 2, 1, 0, 1)],
                expect: &[everywhere("EINVAL", MOV)],
            },
            Encoding {
                name: "MOV (ALU64) X with imm 1",
                rfc: "3.1",
                slots: &[(0xbf, 2, 2, 0, 1)],
                expect: &[everywhere("EINVAL", MOV)],
            },
            Encoding {
                name: "MOVSX (ALU64) with offset 24",
                rfc: "4.1: offset 8, 16 or 32",
                slots: &[(0xbf, 2, 2, 24, 0)],
                expect: &[everywhere("EINVAL", MOV)],
            },
            Encoding {
                name: "MOVSX (ALU) with offset 32 (ALU sign-extends 8 and 16 bits)",
                rfc: "4.1",
                slots: &[(0xbc, 2, 2, 32, 0)],
                expect: &[everywhere("EINVAL", MOV)],
            },
            Encoding {
                name: "NEG (ALU64) with imm 1",
                rfc: "3.1",
                slots: &[(0x87, 2, 0, 0, 1)],
                expect: &[everywhere("EINVAL", "BPF_NEG uses reserved fields")],
            },
            Encoding {
                name: "NEG (ALU) with src_reg 1",
                rfc: "3.1",
                slots: &[(0x84, 2, 1, 0, 0)],
                expect: &[everywhere("EINVAL", "BPF_NEG uses reserved fields")],
            },
            Encoding {
                name: "END TO_LE (ALU) with width 8",
                rfc: "4.2: widths 16, 32 and 64",
                slots: &[(0xd4, 2, 0, 0, 8)],
                expect: &[everywhere("EINVAL", "BPF_END uses reserved fields")],
            },
            Encoding {
                name: "END TO_BE (ALU) with offset 1",
                rfc: "3.1",
                slots: &[(0xdc, 2, 0, 1, 16)],
                expect: &[everywhere("EINVAL", "BPF_END uses reserved fields")],
            },
            Encoding {
                name: "END TO_LE (ALU) with src_reg 1",
                rfc: "4.2: no source register",
                slots: &[(0xd4, 2, 1, 0, 16)],
                expect: &[everywhere("EINVAL", "BPF_END uses reserved fields")],
            },
        ],
    );
}

const JMP: &str = "BPF_JMP/JMP32 uses reserved fields";
const JA: &str = "BPF_JA uses reserved fields";

#[test]
fn refuse_jmp_fields() {
    check(
        "unused fields of jumps, calls and exit",
        &[
            Encoding {
                name: "JEQ (JMP) K with src_reg 1",
                rfc: "3.1",
                slots: &[(0x15, 2, 1, 0, 0)],
                expect: &[everywhere("EINVAL", JMP)],
            },
            Encoding {
                name: "JEQ (JMP32) X with imm 1",
                rfc: "3.1",
                slots: &[(0x1e, 2, 2, 0, 1)],
                expect: &[everywhere("EINVAL", JMP)],
            },
            Encoding {
                name: "JA (JMP) with imm 1",
                rfc: "4.3: {JA, K, JMP} jumps by offset",
                slots: &[(0x05, 0, 0, 0, 1)],
                expect: &[everywhere("EINVAL", JA)],
            },
            Encoding {
                name: "JA (JMP) with dst_reg 2",
                rfc: "3.1",
                slots: &[(0x05, 2, 0, 0, 0)],
                expect: &[everywhere("EINVAL", JA)],
            },
            Encoding {
                name: "JA (JMP32, gotol) with offset 1",
                rfc: "4.3: {JA, K, JMP32} jumps by imm",
                // The offset points at the next instruction: 5.10, which knows no gotol, checks
                // jump targets (by the offset) before opcodes.
                slots: &[(0x06, 0, 0, 1, 0), (0xb7, 0, 0, 0, 0)],
                // gotol: 6.6, and stable 6.1 from 6.1.72.
                expect: &[
                    range(None, Some("6.1.72"), "unknown opcode 06"),
                    range(Some("6.1.72"), Some("6.2"), JA),
                    range(Some("6.2"), Some("6.6"), "unknown opcode 06"),
                    range(Some("6.6"), None, JA),
                ],
            },
            Encoding {
                name: "CALL (helper) with dst_reg 1",
                rfc: "3.1",
                slots: &[(0x85, 1, 0, 0, 7)],
                expect: &[everywhere("EINVAL", "BPF_CALL uses reserved fields")],
            },
            Encoding {
                name: "CALL (helper) with offset 1",
                rfc: "3.1",
                slots: &[(0x85, 0, 0, 1, 7)],
                expect: &[everywhere("EINVAL", "BPF_CALL uses reserved fields")],
            },
            Encoding {
                name: "EXIT with imm 1",
                rfc: "3.1",
                slots: &[(0x95, 0, 0, 0, 1)],
                expect: &[everywhere("EINVAL", "BPF_EXIT uses reserved fields")],
            },
            Encoding {
                name: "EXIT with src_reg 1",
                rfc: "3.1",
                slots: &[(0x95, 0, 1, 0, 0)],
                expect: &[everywhere("EINVAL", "BPF_EXIT uses reserved fields")],
            },
            Encoding {
                name: "EXIT with offset 1: accepted (Linux never checks EXIT's offset)",
                rfc: "3.1: unused fields SHALL be zero (a rule for the writer; the RFC does not make \
                      a runtime refuse)",
                slots: &[(0x95, 0, 0, 1, 0)],
                expect: &[Expect {
                    from: None,
                    before: None,
                    refused: None,
                }],
            },
        ],
    );
}

const LD_ABS: &str = "BPF_LD_[ABS|IND] uses reserved fields";

#[test]
fn refuse_mem_fields() {
    check(
        "unused fields of loads and stores",
        &[
            Encoding {
                name: "LDX MEM DW with imm 1",
                rfc: "3.1",
                slots: &[(0x79, 2, 10, -8, 1)],
                expect: &[everywhere("EINVAL", "BPF_LDX uses reserved fields")],
            },
            Encoding {
                name: "STX MEM DW with imm 1",
                rfc: "3.1",
                slots: &[(0x7b, 10, 2, -8, 1)],
                expect: &[everywhere("EINVAL", "BPF_STX uses reserved fields")],
            },
            Encoding {
                name: "ST MEM DW with src_reg 2",
                rfc: "3.1",
                slots: &[(0x7a, 10, 2, -8, 1)],
                expect: &[everywhere("EINVAL", "BPF_ST uses reserved fields")],
            },
            Encoding {
                name: "LD IMM DW with offset 1",
                rfc: "3.2",
                slots: &[(0x18, 2, 0, 1, 1), (0, 0, 0, 0, 0)],
                expect: &[everywhere("EINVAL", "BPF_LD_IMM64 uses reserved fields")],
            },
            Encoding {
                name: "LD IMM DW whose second slot has an opcode",
                rfc: "3.2: the pseudo instruction's opcode, registers and offset are zero",
                slots: &[(0x18, 2, 0, 0, 1), (0x07, 0, 0, 0, 0)],
                expect: &[everywhere("EINVAL", "invalid bpf_ld_imm64 insn")],
            },
            Encoding {
                name: "LD ABS W with dst_reg 2",
                rfc: "5.5: dst_reg and offset zero",
                slots: &[(0x20, 2, 0, 0, 0)],
                expect: &[everywhere("EINVAL", LD_ABS)],
            },
            Encoding {
                name: "LD ABS W with src_reg 2",
                rfc: "5.5: src_reg zero for ABS",
                slots: &[(0x20, 0, 2, 0, 0)],
                expect: &[everywhere("EINVAL", LD_ABS)],
            },
            Encoding {
                name: "LD IND W with offset 1",
                rfc: "5.5",
                slots: &[(0x40, 0, 2, 1, 0)],
                expect: &[everywhere("EINVAL", LD_ABS)],
            },
            Encoding {
                name: "LD ABS DW",
                rfc: "5.5: sizes W, H, B",
                slots: &[(0x38, 0, 0, 0, 0)],
                expect: &[everywhere("EINVAL", "unknown opcode 38")],
            },
        ],
    );
}

#[test]
fn refuse_unknown_opcodes() {
    check(
        "opcodes RFC 9669 does not define",
        &[
            Encoding {
                name: "ALU op 0xe (K)",
                rfc: "4.1: codes 0x0-0xd",
                slots: &[(0xe4, 2, 0, 0, 1)],
                expect: &[everywhere("EINVAL", "unknown opcode e4")],
            },
            Encoding {
                name: "ALU64 op 0xf (X)",
                rfc: "4.1",
                slots: &[(0xff, 2, 2, 0, 0)],
                expect: &[everywhere("EINVAL", "unknown opcode ff")],
            },
            Encoding {
                name: "NEG (ALU) X",
                rfc: "4.1: NEG only with the source bit clear",
                slots: &[(0x8c, 2, 2, 0, 0)],
                expect: &[everywhere("EINVAL", "unknown opcode 8c")],
            },
            Encoding {
                name: "END (ALU64) with the source bit set",
                rfc: "4.2: reserved, MUST be 0",
                slots: &[(0xdf, 2, 0, 0, 16)],
                expect: &[everywhere("EINVAL", "unknown opcode df")],
            },
            Encoding {
                name: "JMP op 0xf (K)",
                rfc: "4.3",
                slots: &[(0xf5, 2, 0, 0, 0)],
                expect: &[everywhere("EINVAL", "unknown opcode f5")],
            },
            Encoding {
                name: "CALL in JMP32",
                rfc: "4.3: {CALL, K, JMP} only",
                slots: &[(0x86, 0, 0, 0, 7)],
                expect: &[everywhere("EINVAL", "unknown opcode 86")],
            },
            Encoding {
                name: "EXIT in JMP32",
                rfc: "4.3: {CALL, K, JMP} only (EXIT's row)",
                slots: &[(0x96, 0, 0, 0, 0)],
                expect: &[everywhere("EINVAL", "unknown opcode 96")],
            },
            Encoding {
                name: "CALL X (the helper in a register)",
                rfc: "4.3: {CALL, K, JMP} only",
                slots: &[(0x8d, 0, 2, 0, 0)],
                expect: &[everywhere("EINVAL", "unknown opcode 8d")],
            },
            Encoding {
                name: "LD MEM W (LD has modes IMM, ABS and IND)",
                rfc: "5: LD is for 64-bit immediates and the packet loads",
                slots: &[(0x60, 2, 10, -8, 0)],
                expect: &[everywhere("EINVAL", "unknown opcode 60")],
            },
            Encoding {
                name: "ST ATOMIC W",
                rfc: "5.3: atomics are STX",
                slots: &[(0xc2, 10, 0, -8, 0)],
                expect: &[everywhere("EINVAL", "unknown opcode c2")],
            },
            Encoding {
                name: "LDX MEMSX DW",
                rfc: "5.2: sizes B, H, W",
                slots: &[(0x99, 2, 10, -8, 0)],
                // Before 6.6 every mode but MEM is a reserved field of LDX.
                expect: &[
                    range(None, Some("6.6"), "BPF_LDX uses reserved fields"),
                    range(Some("6.6"), None, "unknown opcode 99"),
                ],
            },
        ],
    );
}

#[test]
fn refuse_division_by_immediate_zero() {
    const DIV0: &str = "div by zero";
    // Offset 1 is SDIV/SMOD from 6.6; before, a reserved field.
    const SIGNED: &[Expect] = &[
        range(None, Some("6.6"), ALU),
        range(Some("6.6"), None, DIV0),
    ];
    check(
        "division and modulo by an immediate zero (the RFC: 0 and dst; Linux refuses at load)",
        &[
            Encoding {
                name: "DIV (ALU64) K 0",
                rfc: "4.1: the result is 0",
                slots: &[(0x37, 2, 0, 0, 0)],
                expect: &[everywhere("EINVAL", DIV0)],
            },
            Encoding {
                name: "DIV (ALU) K 0",
                rfc: "4.1: the result is 0",
                slots: &[(0x34, 2, 0, 0, 0)],
                expect: &[everywhere("EINVAL", DIV0)],
            },
            Encoding {
                name: "MOD (ALU64) K 0",
                rfc: "4.1: dst unchanged",
                slots: &[(0x97, 2, 0, 0, 0)],
                expect: &[everywhere("EINVAL", DIV0)],
            },
            Encoding {
                name: "MOD (ALU) K 0",
                rfc: "4.1: dst's upper half zeroed",
                slots: &[(0x94, 2, 0, 0, 0)],
                expect: &[everywhere("EINVAL", DIV0)],
            },
            Encoding {
                name: "SDIV (ALU64) K 0",
                rfc: "4.1: the result is 0",
                slots: &[(0x37, 2, 0, 1, 0)],
                expect: SIGNED,
            },
            Encoding {
                name: "SMOD (ALU) K 0",
                rfc: "4.1: dst's upper half zeroed",
                slots: &[(0x94, 2, 0, 1, 0)],
                expect: SIGNED,
            },
        ],
    );
}

#[test]
fn refuse_shift_by_immediate_out_of_range() {
    check(
        "immediate shift amounts past the width (the RFC masks them; Linux refuses at load)",
        &[
            Encoding {
                name: "LSH (ALU64) K 64",
                rfc: "4.1: masked to 0",
                slots: &[(0x67, 2, 0, 0, 64)],
                expect: &[everywhere("EINVAL", "invalid shift 64")],
            },
            Encoding {
                name: "ARSH (ALU64) K -1",
                rfc: "4.1: masked to 63",
                slots: &[(0xc7, 2, 0, 0, -1)],
                expect: &[everywhere("EINVAL", "invalid shift -1")],
            },
            Encoding {
                name: "RSH (ALU) K 32",
                rfc: "4.1: masked to 0",
                slots: &[(0x74, 2, 0, 0, 32)],
                expect: &[everywhere("EINVAL", "invalid shift 32")],
            },
            Encoding {
                name: "LSH (ALU) K 33",
                rfc: "4.1: masked to 1",
                slots: &[(0x64, 2, 0, 0, 33)],
                expect: &[everywhere("EINVAL", "invalid shift 33")],
            },
        ],
    );
}

#[test]
fn refuse_atomic_fields() {
    // 5.10 knows only immediate 0 (BPF_XADD) and refuses any other before the verifier runs.
    const XADD_ONLY: Expect = range(None, Some("5.12"), "BPF_STX uses reserved fields");
    check(
        "atomic operations the RFC does not define",
        &[
            Encoding {
                name: "ATOMIC B add (read-modify-write only in W and DW)",
                rfc: "5.3: 8-bit and 16-bit wide atomic operations are not supported",
                slots: &[(0xd3, 10, 2, -8, 0)],
                // 6.15 added B and H for load-acquire and store-release.
                expect: &[
                    range(None, Some("6.15"), "unknown opcode d3"),
                    range(Some("6.15"), None, "invalid atomic operand size"),
                ],
            },
            Encoding {
                name: "ATOMIC W imm 0x10 (SUB)",
                rfc: "5.3: ADD, OR, AND, XOR, XCHG, CMPXCHG",
                slots: &[(0xc3, 10, 2, -8, 0x10)],
                expect: &[
                    XADD_ONLY,
                    range(
                        Some("5.12"),
                        None,
                        "BPF_ATOMIC uses invalid atomic opcode 10",
                    ),
                ],
            },
            Encoding {
                name: "ATOMIC DW imm 0xe0 (XCHG without FETCH)",
                rfc: "5.3: XCHG is 0xe0 | FETCH",
                slots: &[(0xdb, 10, 2, -8, 0xe0)],
                expect: &[
                    XADD_ONLY,
                    range(
                        Some("5.12"),
                        None,
                        "BPF_ATOMIC uses invalid atomic opcode e0",
                    ),
                ],
            },
        ],
    );
}
