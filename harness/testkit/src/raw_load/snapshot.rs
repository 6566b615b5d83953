//! The snapshots of raw loads: the verdict and the whole verifier log, redacted where it changes
//! from run to run (these logs do not depend on the compiler), or the statistics only; and what the
//! kernel made of an accepted program (its translated instructions).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

use super::{RawLoad, RawProgram};
use crate::case::Case;
use crate::load::VerifierStats;
use crate::outcome::{CaseError, CaseResult};

/// The snapshot of a raw load: the verdict and the whole log, redacted (or the statistics only).
#[derive(Serialize)]
struct RawSnapshot<'a> {
    program: &'a str,
    prog_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expected_attach_type: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unprivileged: bool,
    license: &'a str,
    /// `1+stats` (`log_level` 5), `2+stats` (6) or `stats` (4).
    log_level: String,
    loaded: bool,
    errno: Option<&'a str>,
    message: Option<&'a str>,
    attempts: Vec<Option<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<&'a VerifierStats>,
    /// One entry per line, so a difference shows as the lines that changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<Vec<String>>,
}

/// `log_level` bits as the kernel documents them: `1+stats`, `2+stats`, `stats`.
fn level_name(bits: u32) -> String {
    let mut parts = Vec::new();
    if bits & 1 != 0 {
        parts.push("1");
    }
    if bits & 2 != 0 {
        parts.push("2");
    }
    if bits & 4 != 0 {
        parts.push("stats");
    }
    parts.join("+")
}

/// The log with what changes from run to run replaced: the verification time, map ids, and kernel
/// addresses (a map's address is printed for `ld_imm64` of a map fd when the loader may see
/// pointers).
pub fn redact_log(log: &str) -> String {
    static TIME: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"verification time \d+ usec").expect("valid regex"));
    static MAP_ID: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"map\[id:\d+\]").expect("valid regex"));
    static ADDRESS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"0xffff[0-9a-f]{12}\b").expect("valid regex"));
    let log = TIME.replace_all(log, "verification time [usec] usec");
    let log = MAP_ID.replace_all(&log, "map[id:[id]]");
    ADDRESS.replace_all(&log, "[addr]").into_owned()
}

impl Case {
    /// Loads a raw program, records the outcome in the case's record and snapshots its verdict and
    /// whole (redacted) log for the running kernel. A refusal is returned, not failed: the case
    /// asserts what it expects.
    pub fn load_raw(&mut self, program: &RawProgram) -> RawLoad {
        self.record_raw(program.load())
    }

    /// [`Case::load_raw`] by an unprivileged user ([`RawProgram::load_unprivileged`]).
    pub fn load_raw_unprivileged(&mut self, program: &RawProgram) -> CaseResult<RawLoad> {
        Ok(self.record_raw(program.load_unprivileged()?))
    }

    fn record_raw(&mut self, load: RawLoad) -> RawLoad {
        // Some messages lack their newline, so the log's timing line is glued to them.
        let message = load.outcome.message.as_deref().map(redact_log);
        let view = RawSnapshot {
            program: &load.outcome.object,
            prog_type: &load.prog_type,
            expected_attach_type: load.attach.as_deref(),
            unprivileged: load.unprivileged,
            license: &load.license,
            log_level: level_name(load.log_level),
            loaded: load.outcome.loaded,
            errno: load.outcome.errno.as_deref(),
            message: message.as_deref(),
            attempts: load.attempts.iter().map(|a| a.errno.as_deref()).collect(),
            stats: (!load.log_in_snapshot)
                .then(|| load.outcome.programs.values().next())
                .flatten()
                .and_then(|p| p.stats.as_ref()),
            log: load
                .log_in_snapshot
                .then(|| redact_log(load.log()).lines().map(str::to_owned).collect()),
        };
        let name = self.snapshot_name(&load.outcome.object);
        self.snapshot(&name, &view);
        self.detail(
            &format!("{}.log_retries", load.outcome.object),
            load.log_retries,
        );
        self.push_load(load.outcome.clone());
        load
    }

    /// Snapshots what the kernel made of an accepted raw program, its translated instructions
    /// (`loader::disasm::fields`, a helper call by the name `/proc/kallsyms` gives it), as
    /// `<file>__<case>__xlated` for the running kernel; a
    /// `fail` when the kernel would not hand them over.
    pub fn snapshot_xlated(&mut self, load: &RawLoad) -> CaseResult {
        let insns = match &load.xlated {
            Some(Ok(insns)) => insns,
            Some(Err(e)) => {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "BPF_OBJ_GET_INFO_BY_FD gave no translated instructions of {}: {e}",
                    load.outcome.object
                )));
            }
            None => {
                return Err(CaseError::Fail(anyhow::anyhow!(
                    "the kernel refused {}: it has no translated instructions",
                    load.outcome.object
                )));
            }
        };
        #[derive(Serialize)]
        struct Xlated<'a> {
            program: &'a str,
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            unprivileged: bool,
            insns: Vec<String>,
        }
        let view = Xlated {
            program: &load.outcome.object,
            unprivileged: load.unprivileged,
            insns: loader::disasm::fields(insns, helper_name),
        };
        let name = format!("{}__xlated", self.id().replace("::", "__"));
        self.snapshot(&name, &view);
        Ok(())
    }
}

/// The kernel function a translated helper call jumps to: `__bpf_call_base + imm`, by
/// `/proc/kallsyms` (read once).
fn helper_name(imm: i32) -> Option<String> {
    static BY_OFFSET: LazyLock<HashMap<i64, String>> = LazyLock::new(|| {
        let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
        let functions: Vec<(u64, &str)> = text
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                let address = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                (address != 0 && matches!(kind, "t" | "T")).then_some((address, name))
            })
            .collect();
        let Some(&(base, _)) = functions.iter().find(|(_, n)| *n == "__bpf_call_base") else {
            return HashMap::new();
        };
        let mut by_offset = HashMap::new();
        for (address, name) in functions {
            by_offset
                .entry(address as i64 - base as i64)
                .or_insert_with(|| name.to_owned());
        }
        by_offset
    });
    // 0: the kernel hid the address (bpf_dump_raw_ok), or it really is the base.
    (imm != 0)
        .then(|| BY_OFFSET.get(&(imm as i64)).cloned())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::redact_log;

    #[test]
    fn redaction_keeps_everything_but_times_and_ids() {
        let log = "0: (18) r1 = map[id:42]\n3: (18) r1 = 0xffff888136b18e00 ; R1=map_ptr\n\
                   verification time 31 usec\nstack depth 8\n";
        assert_eq!(
            redact_log(log),
            "0: (18) r1 = map[id:[id]]\n3: (18) r1 = [addr] ; R1=map_ptr\n\
             verification time [usec] usec\nstack depth 8\n"
        );
    }
}
