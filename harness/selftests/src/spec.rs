//! What a program's annotations ask for (`parse_test_spec` of `test_loader.c`): the verdict,
//! messages, disassembly and return value expected in the privileged and the unprivileged load,
//! the load's flags and log level, and the conditions under which the test runs at all.

use crate::pattern::{DisasmList, Pattern};

/// `BPF_F_*` program flags the annotations name.
const FLAGS: &[(&str, u32)] = &[
    ("BPF_F_STRICT_ALIGNMENT", 1 << 0),
    ("BPF_F_ANY_ALIGNMENT", 1 << 1),
    ("BPF_F_TEST_RND_HI32", 1 << 2),
    ("BPF_F_TEST_STATE_FREQ", 1 << 3),
    ("BPF_F_SLEEPABLE", 1 << 4),
    ("BPF_F_XDP_HAS_FRAGS", 1 << 5),
    ("BPF_F_TEST_REG_INVARIANTS", 1 << 7),
];

/// The architecture the suite runs on, as `__arch_*` names it.
pub const ARCH: &str = "X86_64";

/// Values the tree's loader defines for `__retval` (read from its `test_loader.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Constants {
    /// `POINTER_VALUE`: a return value that is not compared.
    pub pointer_value: i32,
    /// `TEST_DATA_LEN`: bytes of packet data a test run gets.
    pub test_data_len: u32,
    /// `TEST_LOADER_LOG_BUF_SZ`: the verifier log buffer.
    pub log_buf_size: u32,
}

/// The expectations of one mode (privileged or unprivileged).
#[derive(Clone, Debug, Default)]
pub struct Expect {
    /// `__failure`: the load must be refused.
    pub failure: bool,
    /// `__msg`/`__not_msg`: the verifier log.
    pub msgs: Vec<Pattern>,
    /// `__xlated`: the program after the verifier's rewrites.
    pub xlated: Vec<Pattern>,
    /// `__jited`: the JIT's x86-64 code.
    pub jited: Vec<Pattern>,
    /// `__stderr`: the program's BPF stderr stream after its test run.
    pub stderr: Vec<Pattern>,
    /// `__stdout`: its stdout stream.
    pub stdout: Vec<Pattern>,
    /// `__retval`: run the program once and expect this return value.
    pub retval: Option<i32>,
    /// `__caps_unpriv`: capabilities the unprivileged load keeps (bit numbers).
    pub caps: u64,
}

/// Whether a test runs with the JIT on or off only (`__load_if_JITed`, `__load_if_no_JITed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadMode {
    /// Only when programs are JIT-compiled.
    Jited,
    /// Only when they are interpreted.
    NoJited,
}

/// One program's test specification.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// `__description`.
    pub description: Option<String>,
    /// Load it privileged.
    pub privileged: bool,
    /// Load it unprivileged.
    pub unprivileged: bool,
    /// Privileged expectations.
    pub priv_: Expect,
    /// Unprivileged expectations.
    pub unpriv: Expect,
    /// `__log_level`.
    pub log_level: u32,
    /// `__flag`s: (flag, cleared) in order, applied to the tree loader's default flags.
    pub flag_ops: Vec<(u32, bool)>,
    /// `__arch_*`: the architectures it runs on (empty: all).
    pub arch: Vec<String>,
    /// `__load_if_JITed` / `__load_if_no_JITed`.
    pub load_mode: Option<LoadMode>,
    /// `__auxiliary` (privileged) / `__auxiliary_unpriv`: loaded with every test of its mode,
    /// not a test of its own.
    pub auxiliary: bool,
    /// `__btf_path`: the BTF that CO-RE relocations resolve against.
    pub btf_path: Option<String>,
    /// `__btf_func_path`: BTF whose FUNC parameters fix up naked subprograms.
    pub btf_func_path: Option<String>,
    /// `__linear_size`: the linear part of the test run's skb.
    pub linear_size: Option<i32>,
    /// Annotations the suite does not know (it cannot honour them).
    pub unknown: Vec<String>,
}

impl Spec {
    /// Parses `tags` (normalised, in order) of a program of type `prog_type` (bpftool's name).
    /// `Err` is what the tree's loader would print and fail the program with.
    pub fn parse(tags: &[String], prog_type: &str, c: &Constants) -> Result<Spec, String> {
        let mut s = Spec::default();
        let (mut priv_m, mut unpriv_m) = (false, false);
        let (mut unpriv_result, mut unpriv_retval) = (false, false);
        let mut lists = Lists::default();
        let mut collect_jit = false;
        for tag in tags {
            let (key, value) = match tag.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (tag.as_str(), None),
            };
            match (key, value) {
                ("test_description", Some(v)) => s.description = Some(v.to_owned()),
                ("test_expect_failure", None) => (s.priv_.failure, priv_m) = (true, true),
                ("test_expect_success", None) => (s.priv_.failure, priv_m) = (false, true),
                ("test_expect_failure_unpriv", None) => {
                    (s.unpriv.failure, unpriv_m, unpriv_result) = (true, true, true)
                }
                ("test_expect_success_unpriv", None) => {
                    (s.unpriv.failure, unpriv_m, unpriv_result) = (false, true, true)
                }
                ("test_auxiliary", None) => (s.auxiliary, priv_m) = (true, true),
                ("test_auxiliary_unpriv", None) => (s.auxiliary, unpriv_m) = (true, true),
                ("test_expect_msg", Some(v)) => {
                    s.priv_.msgs.push(Pattern::new(v, false, false)?);
                    priv_m = true;
                }
                ("test_expect_not_msg", Some(v)) => {
                    s.priv_.msgs.push(Pattern::new(v, false, true)?);
                    priv_m = true;
                }
                ("test_expect_msg_unpriv", Some(v)) => {
                    s.unpriv.msgs.push(Pattern::new(v, false, false)?);
                    unpriv_m = true;
                }
                ("test_expect_not_msg_unpriv", Some(v)) => {
                    s.unpriv.msgs.push(Pattern::new(v, false, true)?);
                    unpriv_m = true;
                }
                ("test_jited" | "test_jited_unpriv", Some(v)) => {
                    if s.arch.is_empty() {
                        return Err(format!("__jited used before __arch_* ({tag})"));
                    }
                    if collect_jit {
                        if key == "test_jited" {
                            lists.jited.push(v)?;
                            priv_m = true;
                        } else {
                            lists.jited_unpriv.push(v)?;
                            unpriv_m = true;
                        }
                    }
                }
                ("test_expect_xlated", Some(v)) => {
                    lists.xlated.push(v)?;
                    priv_m = true;
                }
                ("test_expect_xlated_unpriv", Some(v)) => {
                    lists.xlated_unpriv.push(v)?;
                    unpriv_m = true;
                }
                ("test_retval", Some(v)) => {
                    s.priv_.retval = Some(retval(v, c)?);
                    priv_m = true;
                }
                ("test_retval_unpriv", Some(v)) => {
                    s.unpriv.retval = Some(retval(v, c)?);
                    (unpriv_m, unpriv_retval) = (true, true);
                }
                ("test_log_level", Some(v)) => s.log_level = int(v, "test log level")? as u32,
                ("test_prog_flags", Some(v)) => {
                    let (name, clear) = match v.strip_prefix('!') {
                        Some(n) => (n, true),
                        None => (v, false),
                    };
                    let flag = match FLAGS.iter().find(|(n, _)| *n == name) {
                        Some((_, f)) => *f,
                        None => int(name, "test prog flags")? as u32,
                    };
                    s.flag_ops.push((flag, clear));
                }
                ("test_arch", Some(v)) => {
                    const KNOWN: &[&str] = &["X86_64", "ARM64", "RISCV64", "s390x", "LOONGARCH"];
                    if !KNOWN.contains(&v) {
                        return Err(format!("bad arch spec: '{v}'"));
                    }
                    s.arch.push(v.to_owned());
                    collect_jit = v == ARCH;
                    lists.jited.restart();
                    lists.jited_unpriv.restart();
                }
                ("test_btf_path", Some(v)) => s.btf_path = Some(v.to_owned()),
                ("test_btf_func_path", Some(v)) => s.btf_func_path = Some(v.to_owned()),
                ("test_caps_unpriv", Some(v)) => {
                    s.unpriv.caps |= caps(v)?;
                    unpriv_m = true;
                }
                ("load_mode", Some("jited")) => s.load_mode = Some(LoadMode::Jited),
                ("load_mode", Some("no_jited")) => s.load_mode = Some(LoadMode::NoJited),
                ("load_mode", Some(v)) => return Err(format!("bad load spec: '{v}'")),
                ("test_expect_stderr", Some(v)) => lists.stderr.push(v)?,
                ("test_expect_stderr_unpriv", Some(v)) => lists.stderr_unpriv.push(v)?,
                ("test_expect_stdout", Some(v)) => lists.stdout.push(v)?,
                ("test_expect_stdout_unpriv", Some(v)) => lists.stdout_unpriv.push(v)?,
                ("test_linear_size", Some(v)) => match prog_type {
                    "sched_act" | "sched_cls" | "cgroup_skb" => {
                        s.linear_size = Some(int(v, "test linear size")?)
                    }
                    _ => return Err("__linear_size for unsupported program type".into()),
                },
                _ => s.unknown.push(tag.clone()),
            }
        }
        s.priv_.xlated = lists.xlated.patterns;
        s.unpriv.xlated = lists.xlated_unpriv.patterns;
        s.priv_.jited = lists.jited.patterns;
        s.unpriv.jited = lists.jited_unpriv.patterns;
        s.priv_.stderr = lists.stderr.patterns;
        s.unpriv.stderr = lists.stderr_unpriv.patterns;
        s.priv_.stdout = lists.stdout.patterns;
        s.unpriv.stdout = lists.stdout_unpriv.patterns;
        if !priv_m && !unpriv_m {
            priv_m = true;
        }
        (s.privileged, s.unprivileged) = (priv_m, unpriv_m);
        // What the unprivileged load does not say, it inherits from the privileged one.
        if !unpriv_result {
            s.unpriv.failure = s.priv_.failure;
        }
        if !unpriv_retval {
            s.unpriv.retval = s.priv_.retval;
        }
        let p = s.priv_.clone();
        let u = &mut s.unpriv;
        for (mine, theirs) in [
            (&mut u.msgs, p.msgs),
            (&mut u.xlated, p.xlated),
            (&mut u.jited, p.jited),
            (&mut u.stderr, p.stderr),
            (&mut u.stdout, p.stdout),
        ] {
            if mine.is_empty() {
                *mine = theirs;
            }
        }
        Ok(s)
    }

    /// The load's `prog_flags`: the tree loader's defaults with the `__flag`s applied.
    pub fn prog_flags(&self, defaults: u32) -> u32 {
        self.flag_ops.iter().fold(
            defaults,
            |f, &(flag, clear)| if clear { f & !flag } else { f | flag },
        )
    }

    /// The expectations of a mode.
    pub fn expect(&self, unprivileged: bool) -> &Expect {
        if unprivileged {
            &self.unpriv
        } else {
            &self.priv_
        }
    }
}

/// The disassembly and stream pattern lists being built.
#[derive(Default)]
struct Lists {
    xlated: DisasmList,
    xlated_unpriv: DisasmList,
    jited: DisasmList,
    jited_unpriv: DisasmList,
    stderr: DisasmList,
    stderr_unpriv: DisasmList,
    stdout: DisasmList,
    stdout_unpriv: DisasmList,
}

/// `parse_int`: decimal, or hexadecimal after `0x`; the C `long` cast to `int`.
fn int(s: &str, what: &str) -> Result<i32, String> {
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => s.parse::<i64>().ok(),
    };
    parsed
        .map(|v| v as i32)
        .ok_or_else(|| format!("failed to parse {what} from '{s}'"))
}

/// `parse_retval`: a number or one of the names the loader knows.
fn retval(s: &str, c: &Constants) -> Result<i32, String> {
    match s {
        "_INT_MIN" | "INT_MIN" => Ok(i32::MIN),
        "POINTER_VALUE" => Ok(c.pointer_value),
        "TEST_DATA_LEN" => Ok(c.test_data_len as i32),
        _ => int(s, "__retval"),
    }
}

/// `parse_caps`: `|`-separated capability numbers.
fn caps(s: &str) -> Result<u64, String> {
    let mut mask = 0u64;
    for token in s.split('|') {
        let token = token.trim();
        if token.starts_with("CAP_") {
            return Err(format!(
                "define {token} constant in bpf_misc.h, failed to parse caps"
            ));
        }
        match token.parse::<u32>() {
            Ok(n) if n > 0 && n < 64 => mask |= 1 << n,
            _ => return Err(format!("failed to parse caps '{s}'")),
        }
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Constants = Constants {
        pointer_value: 0xbadcafe,
        test_data_len: 64,
        log_buf_size: 2 << 20,
    };

    fn parse(tags: &[&str]) -> Spec {
        let tags: Vec<String> = tags.iter().map(|s| s.to_string()).collect();
        Spec::parse(&tags, "socket_filter", &C).unwrap()
    }

    #[test]
    fn untagged_program_expects_a_privileged_success() {
        let s = parse(&[]);
        assert!(s.privileged && !s.unprivileged);
        assert!(!s.priv_.failure);
    }

    #[test]
    fn unprivileged_inherits_what_it_does_not_say() {
        let s = parse(&[
            "test_expect_failure",
            "test_expect_msg=R0 max value",
            "test_expect_success_unpriv",
            "test_retval=7",
            "test_prog_flags=BPF_F_ANY_ALIGNMENT",
            "test_prog_flags=!BPF_F_TEST_RND_HI32",
        ]);
        assert!(s.privileged && s.unprivileged);
        assert!(s.priv_.failure && !s.unpriv.failure);
        assert_eq!(s.unpriv.msgs.len(), 1);
        assert_eq!(s.unpriv.retval, Some(7));
        assert_eq!(s.prog_flags(4 | 128), 2 | 128);
    }

    #[test]
    fn retvals_and_caps() {
        let s = parse(&["test_retval=POINTER_VALUE", "test_caps_unpriv=21|39"]);
        assert_eq!(s.priv_.retval, Some(0xbadcafe));
        assert_eq!(s.unpriv.caps, (1 << 21) | (1 << 39));
        assert_eq!(parse(&["test_retval=0xffffffff"]).priv_.retval, Some(-1));
        assert_eq!(
            parse(&["test_retval=_INT_MIN"]).priv_.retval,
            Some(i32::MIN)
        );
        let tags = vec!["test_caps_unpriv=CAP_BPF".to_owned()];
        assert!(Spec::parse(&tags, "xdp", &C).is_err());
    }

    #[test]
    fn jited_lines_are_kept_for_this_architecture_only() {
        let s = parse(&[
            "test_arch=ARM64",
            "test_jited=   mov x0, #1",
            "test_arch=X86_64",
            "test_jited=   endbr64",
            "test_jited=...",
            "test_jited=   ret",
        ]);
        assert_eq!(s.arch, ["ARM64", "X86_64"]);
        let lines: Vec<(&str, bool)> = s
            .priv_
            .jited
            .iter()
            .map(|p| (p.text.as_str(), p.on_next_line))
            .collect();
        assert_eq!(lines, [("   endbr64", true), ("   ret", false)]);
        let early = vec!["test_jited=x".to_owned()];
        assert!(Spec::parse(&early, "xdp", &C).is_err());
    }
}
