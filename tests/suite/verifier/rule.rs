//! What a rule is: data. The program (instructions from `testkit::insn`, so the log does not
//! depend on a compiler), how it is loaded, and what the kernel does with it per kernel range.

use std::cell::OnceCell;
use std::os::fd::{AsFd, BorrowedFd};

use libbpf_rs::libbpf_sys::{self, BPF_FUNC_map_lookup_elem};
use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType, ProgramAttachType, ProgramType};
use testkit::floors::Version;
use testkit::insn::{Asm, Reg::*, Size};
use testkit::raw_load;
use testkit::{CaseError, LogLevel, OrError};

/// A packet for the test runs: 64 bytes, byte `i` holding `i` (so a read shows where it read).
pub const PACKET: [u8; 64] = {
    let mut p = [0u8; 64];
    let mut i = 0;
    while i < p.len() {
        p[i] = i as u8;
        i += 1;
    }
    p
};
/// What user space stores in the fixture maps' value at key 0.
pub const STORED: u64 = 0x1234;

/// One catalogue entry. Start from [`RULE`] and change what differs.
pub struct Rule {
    pub prog: ProgramType,
    /// The attach type it is verified for (`expected_attach_type`).
    pub attach: Option<ProgramAttachType>,
    /// Loaded by an unprivileged user (a forked child: uid 65534, no capabilities).
    pub unprivileged: bool,
    pub license: &'static str,
    pub level: LogLevel,
    /// The first log buffer's size; the harness grows it on `ENOSPC`.
    pub log_size: usize,
    pub insns: fn(&Fixture) -> Asm,
    /// The functions' first slots and names (BTF `func_info`), for programs with callbacks.
    pub functions: &'static [(u32, &'static str)],
    /// The test run's input, for accepted rules that expect a return value.
    pub input: &'static [u8],
    /// Features the rule needs that older kernels lack, and how they refuse it.
    pub needs: &'static [Need],
    /// What the kernel does with it: the first entry whose range holds the running kernel.
    pub expect: &'static [Expect],
}

/// The defaults: a privileged GPL socket filter at log level 1, a 1 MiB log buffer.
pub const RULE: Rule = Rule {
    prog: ProgramType::SocketFilter,
    attach: None,
    unprivileged: false,
    license: "GPL",
    level: LogLevel::Verbose,
    log_size: 1 << 20,
    insns: |_| Asm::new(),
    functions: &[],
    input: &PACKET,
    needs: &[],
    expect: &[],
};

/// A feature (a floor id) and how a kernel without it refuses the program: when the refusal's key
/// line matches `absent`, the case is judged by the feature's floor (`unsupported` below it).
pub struct Need {
    pub id: &'static str,
    pub absent: Pat,
}

/// A phrase of the log: a substring, or a regex.
#[derive(Clone, Copy, Debug)]
pub enum Pat {
    S(&'static str),
    Re(&'static str),
}

impl Pat {
    /// Where the first match in `text` ends.
    pub fn find(self, text: &str) -> Option<usize> {
        match self {
            Pat::S(s) => text.find(s).map(|at| at + s.len()),
            Pat::Re(re) => {
                raw_load::regex_end(re, text).unwrap_or_else(|e| panic!("rule regex {re:?}: {e}"))
            }
        }
    }
}

/// Loads, or refused with an errno (`EACCES`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Loads,
    Refused(&'static str),
}

/// What one range of kernels does with a rule.
pub struct Expect {
    /// First release of the range (`None`: from the beginning).
    pub from: Option<&'static str>,
    /// First release past the range (`None`: to this day).
    pub before: Option<&'static str>,
    /// Only where the JIT is on (`true`) or off (`false`); `None`: either.
    pub jit: Option<bool>,
    /// Only where the verifier enforces its Spectre v1 rules on unprivileged programs (`true`)
    /// or lets them bypass these, the kernel's CPU mitigations being off (`false`); `None`:
    /// either. See [`super::spectre`].
    pub spectre_v1: Option<bool>,
    pub verdict: Verdict,
    /// The key line (the verifier's last complaint) contains this.
    pub key: Option<Pat>,
    /// These appear in the log, in this order.
    pub log: &'static [Pat],
    /// None of these appears in the log.
    pub not: &'static [Pat],
    /// The test run returns this.
    pub returns: Option<u32>,
    /// The first load's errno, before the harness grew the log buffer and retried.
    pub first_attempt: Option<&'static str>,
}

/// Accepted on every kernel (narrow it with [`Expect::from`] and [`Expect::before`]).
pub const fn loads() -> Expect {
    Expect {
        from: None,
        before: None,
        jit: None,
        spectre_v1: None,
        verdict: Verdict::Loads,
        key: None,
        log: &[],
        not: &[],
        returns: None,
        first_attempt: None,
    }
}

/// Refused with `errno` on every kernel.
pub const fn refused(errno: &'static str) -> Expect {
    Expect {
        verdict: Verdict::Refused(errno),
        ..loads()
    }
}

impl Expect {
    pub const fn from(self, release: &'static str) -> Self {
        Expect {
            from: Some(release),
            ..self
        }
    }

    pub const fn before(self, release: &'static str) -> Self {
        Expect {
            before: Some(release),
            ..self
        }
    }

    pub const fn jit(self, on: bool) -> Self {
        Expect {
            jit: Some(on),
            ..self
        }
    }

    pub const fn spectre_v1(self, enforced: bool) -> Self {
        Expect {
            spectre_v1: Some(enforced),
            ..self
        }
    }

    pub const fn key(self, pat: Pat) -> Self {
        Expect {
            key: Some(pat),
            ..self
        }
    }

    pub const fn log(self, pats: &'static [Pat]) -> Self {
        Expect { log: pats, ..self }
    }

    pub const fn not(self, pats: &'static [Pat]) -> Self {
        Expect { not: pats, ..self }
    }

    pub const fn returns(self, value: u32) -> Self {
        Expect {
            returns: Some(value),
            ..self
        }
    }

    pub const fn first_attempt(self, errno: &'static str) -> Self {
        Expect {
            first_attempt: Some(errno),
            ..self
        }
    }

    /// Whether the range holds kernel `version`, running programs JITed or not (`jit`).
    pub fn holds(&self, version: Version, jit: bool) -> bool {
        let parse = |v: &str| Version::parse(v).unwrap_or_else(|| panic!("release {v:?}"));
        self.jit.is_none_or(|on| on == jit)
            && self.from.is_none_or(|from| version.at_least(parse(from)))
            && self
                .before
                .is_none_or(|before| !version.at_least(parse(before)))
    }
}

/// Maps for the rules about map values, made per case: an array and a hash (4-byte key, one
/// 8-byte value holding [`STORED`] at key 0), and on first use an array the programs may only
/// read and a ring buffer.
pub struct Fixture {
    pub array: MapHandle,
    pub hash: MapHandle,
    read_only: OnceCell<MapHandle>,
    ringbuf: OnceCell<MapHandle>,
}

impl Fixture {
    pub fn new() -> Result<Self, CaseError> {
        Ok(Fixture {
            array: stored_map(MapType::Array, "vals", 0)?,
            hash: stored_map(MapType::Hash, "table", 0)?,
            read_only: OnceCell::new(),
            ringbuf: OnceCell::new(),
        })
    }

    /// An array like `array` that programs may only read (`BPF_F_RDONLY_PROG`, 5.2+).
    pub fn read_only(&self) -> BorrowedFd<'_> {
        self.read_only
            .get_or_init(|| {
                stored_map(MapType::Array, "rdonly", libbpf_sys::BPF_F_RDONLY_PROG)
                    .unwrap_or_else(|e| panic!("creating a read-only array: {}", e.reason()))
            })
            .as_fd()
    }

    /// A 4 KiB ring buffer (5.8+).
    pub fn ringbuf(&self) -> BorrowedFd<'_> {
        self.ringbuf
            .get_or_init(|| {
                MapHandle::create(MapType::RingBuf, Some("ring"), 0, 0, 4096, &map_opts(0))
                    .unwrap_or_else(|e| panic!("creating a ring buffer: {e}"))
            })
            .as_fd()
    }
}

fn map_opts(flags: u32) -> libbpf_sys::bpf_map_create_opts {
    libbpf_sys::bpf_map_create_opts {
        sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        map_flags: flags,
        ..Default::default()
    }
}

fn stored_map(ty: MapType, name: &str, flags: u32) -> Result<MapHandle, CaseError> {
    let map = MapHandle::create(ty, Some(name), 4, 8, 1, &map_opts(flags))
        .or_error("creating a fixture map")?;
    map.update(&0u32.to_ne_bytes(), &STORED.to_ne_bytes(), MapFlags::ANY)
        .or_error("writing a fixture map")?;
    Ok(map)
}

/// `r0 = bpf_map_lookup_elem(map, &(u32){0})`: a pointer to the value, or NULL.
pub fn lookup(map: BorrowedFd<'_>) -> Asm {
    Asm::new()
        .st_imm(Size::W, R10, -4, 0)
        .mov64_reg(R2, R10)
        .add64_imm(R2, -4)
        .ld_map_fd(R1, map)
        .call(BPF_FUNC_map_lookup_elem)
}
