//! The two questions of a cell, answered as a record. On a kernel the tree belongs to, every
//! expectation must hold: a mismatch is `fail`, unless `kernels/selftests-divergences.toml` lists
//! it with its reason. On any other kernel the program's verdict and key line are set against
//! the annotation without failing: `details.verdict` is `holds` or `differs`, the outcome `pass`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use record::{LoadOutcome, Outcome, ProgramLog, Record};
use serde::Deserialize;
use serde_json::json;

use crate::exec::{ModeRun, ProgramRun, refusal};

/// A known divergence of a tree's expectation on a kernel it belongs to.
#[derive(Clone, Debug, Deserialize)]
pub struct Divergence {
    /// The tree (`6.12`).
    pub tree: String,
    /// The case: `<object>/<program>`.
    pub case: String,
    /// The kernels it diverges on (all of the tree's when empty).
    #[serde(default)]
    pub kernels: Vec<String>,
    /// Why, as a kernel developer would accept it (the commit, the config, the build).
    pub reason: String,
}

/// A program that crashes a kernel when it loads: never loaded there.
#[derive(Clone, Debug, Deserialize)]
pub struct Crash {
    /// The tree (`7.3`).
    pub tree: String,
    /// The case: `<object>/<program>`.
    pub case: String,
    /// The kernels it crashes.
    pub kernels: Vec<String>,
    /// What the kernel does (its first crash line) and the fix it lacks.
    pub reason: String,
}

/// `kernels/selftests-divergences.toml`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Divergences {
    /// Every listed divergence.
    #[serde(default, rename = "divergence")]
    pub list: Vec<Divergence>,
    /// Programs not loaded on the kernels they crash.
    #[serde(default, rename = "crash")]
    pub crashes: Vec<Crash>,
}

impl Divergences {
    /// Reads the file (none listed when it does not exist).
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The programs of `object` of `tree` that crash `kernel`, with the reason.
    pub fn crashing(&self, tree: &str, object: &str, kernel: &str) -> BTreeMap<String, String> {
        (self.crashes.iter())
            .filter(|c| c.tree == tree && c.kernels.iter().any(|k| k == kernel))
            .filter_map(|c| {
                let (o, program) = c.case.split_once('/')?;
                (o == object).then(|| (program.to_owned(), c.reason.clone()))
            })
            .collect()
    }

    /// The reason `case` of `tree` diverges on `kernel`, if listed.
    pub fn find(&self, tree: &str, case: &str, kernel: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|d| {
                d.tree == tree
                    && d.case == case
                    && (d.kernels.is_empty() || d.kernels.iter().any(|k| k == kernel))
            })
            .map(|d| d.reason.as_str())
    }
}

/// Where a program ran.
pub struct Cell<'a> {
    /// The tree (`6.12`).
    pub tree: &'a str,
    /// The column's kernel id.
    pub kernel: &'a str,
    /// `uname -r`.
    pub release: &'a str,
    /// The kernel is one the tree belongs to.
    pub own: bool,
    /// The listed divergences.
    pub divergences: &'a Divergences,
}

/// The case id of `program` of `object` of `tree`: `selftests_6_12::verifier_and/<program>`.
pub fn case_id(tree: &str, object: &str, program: &str) -> String {
    format!("{}::{object}/{program}", binary(tree))
}

/// How the pseudo binaries of the corpora are named: `selftests_<tree>`.
pub const BINARY_PREFIX: &str = "selftests_";

/// The pseudo binary the corpus of `tree` is reported under: `selftests_6_12`.
pub fn binary(tree: &str) -> String {
    format!("{BINARY_PREFIX}{}", tree.replace(['.', '-'], "_"))
}

/// The record of one program on one kernel.
pub fn record(object: &str, run: &ProgramRun, cell: &Cell<'_>) -> Record {
    let case = case_id(cell.tree, object, &run.name);
    let mut r = Record::runner(cell.kernel, &case, Outcome::Pass, None);
    r.binary = binary(cell.tree);
    r.test = case.clone();
    r.prog_type = run.prog_type.clone();
    r.kernel_release = cell.release.to_owned();
    r.duration_ms = run.duration.as_millis() as u64;
    r.loads = run
        .modes
        .iter()
        .filter(|m| m.skipped.is_none())
        .map(|m| load(object, &run.name, m))
        .collect();
    let d = &mut r.details;
    d.insert("tree".into(), cell.tree.into());
    d.insert("own_kernel".into(), cell.own.into());
    if !cell.own {
        let note = "loads only: programs run (__retval) on the tree's own kernels";
        d.insert("test_runs".into(), note.into());
    }
    if let Some(desc) = &run.description {
        d.insert("description".into(), desc.clone().into());
    }
    for m in &run.modes {
        d.insert(mode_name(m).into(), mode_details(m));
    }
    if let Some(e) = &run.error {
        (r.outcome, r.reason) = (Outcome::Error, Some(e.clone()));
        return r;
    }
    if let Some(why) = &run.unsupported {
        (r.outcome, r.reason) = (Outcome::Unsupported, Some(why.clone()));
        return r;
    }
    let ran: Vec<&ModeRun> = run.modes.iter().filter(|m| m.skipped.is_none()).collect();
    if ran.is_empty() {
        let why = run
            .modes
            .iter()
            .filter_map(|m| m.skipped.clone())
            .collect::<Vec<_>>();
        (r.outcome, r.reason) = (Outcome::Unsupported, Some(why.join("; ")));
        return r;
    }
    let first = ran.iter().find_map(|m| {
        let what = m.mismatches.first()?;
        Some(if m.unprivileged {
            format!("unprivileged: {what}")
        } else {
            what.clone()
        })
    });
    let Some(what) = first else {
        r.details.insert("verdict".into(), "holds".into());
        r.details.insert("cell".into(), "holds".into());
        return r;
    };
    r.details.insert("verdict".into(), "differs".into());
    r.details
        .insert("cell".into(), format!("differs: {what}").into());
    if cell.own {
        match cell
            .divergences
            .find(cell.tree, &format!("{object}/{}", run.name), cell.kernel)
        {
            Some(reason) => {
                r.details.insert("divergence".into(), reason.into());
            }
            None => {
                r.outcome = Outcome::Fail;
                r.reason = Some(format!(
                    "the tree's own expectation does not hold on its kernel: {what}"
                ));
            }
        }
    }
    r
}

fn mode_name(m: &ModeRun) -> &'static str {
    if m.unprivileged {
        "unprivileged"
    } else {
        "privileged"
    }
}

/// What one mode expected and saw, for the report.
fn mode_details(m: &ModeRun) -> serde_json::Value {
    if let Some(why) = &m.skipped {
        return json!({ "skipped": why });
    }
    let loaded = m.loaded;
    json!({
        "expected": if m.expected_failure { "refused" } else { "accepted" },
        "verdict": if loaded { "accepted" } else { "refused" },
        "key_line": (!loaded).then(|| refusal(&m.load)),
        "mismatches": m.mismatches,
        "retval": m.retval,
        "loaded_by": m.fresh.as_ref().map_or("the prepared object".to_owned(), |why| format!("libbpf, fresh object: {why}")),
    })
}

/// The record's load of one mode.
fn load(object: &str, program: &str, m: &ModeRun) -> LoadOutcome {
    let loaded = m.loaded;
    let mut outcome = LoadOutcome {
        object: if m.unprivileged {
            format!("{object} (unprivileged)")
        } else {
            object.to_owned()
        },
        loaded,
        errno: m.load.errno.map(loader::errno::name),
        failed_program: (!loaded).then(|| program.to_owned()),
        message: (!loaded).then(|| refusal(&m.load)),
        ..Default::default()
    };
    outcome.programs.insert(
        program.to_owned(),
        ProgramLog {
            stats: loader::load::parse_stats(&m.load.log),
            log: m.load.log.clone(),
            size: m.size.clone(),
        },
    );
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::ProgLoad;

    fn refused(mismatch: Option<&str>) -> ProgramRun {
        ProgramRun {
            name: "p".into(),
            prog_type: "socket_filter".into(),
            modes: vec![ModeRun {
                load: ProgLoad {
                    errno: Some(13),
                    log: "0: (b7) r0 = 0\nR1 !read_ok\nprocessed 1 insns (limit 1000000) max_states_per_insn 0 total_states 0 peak_states 0 mark_read 0\n".into(),
                    ..Default::default()
                },
                expected_failure: true,
                mismatches: mismatch.into_iter().map(str::to_owned).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn own_kernel_mismatch_fails_unless_listed() {
        let none = Divergences::default();
        let cell = |own, d| Cell {
            tree: "6.12",
            kernel: "6.12",
            release: "6.12.0",
            own,
            divergences: d,
        };
        let r = record("verifier_x", &refused(None), &cell(true, &none));
        assert_eq!(r.case, "selftests_6_12::verifier_x/p");
        assert_eq!(
            (r.outcome, r.details["verdict"].as_str()),
            (Outcome::Pass, Some("holds"))
        );
        assert_eq!(r.loads[0].message.as_deref(), Some("R1 !read_ok"));
        let bad = refused(Some("verifier log lacks `x`"));
        let r = record("verifier_x", &bad, &cell(true, &none));
        assert_eq!(r.outcome, Outcome::Fail);
        let r = record("verifier_x", &bad, &cell(false, &none));
        assert_eq!(
            (r.outcome, r.details["verdict"].as_str()),
            (Outcome::Pass, Some("differs"))
        );
        let listed: Divergences = toml::from_str(
            "[[divergence]]\ntree = \"6.12\"\ncase = \"verifier_x/p\"\nreason = \"r\"\n",
        )
        .unwrap();
        let r = record("verifier_x", &bad, &cell(true, &listed));
        assert_eq!(
            (r.outcome, r.details["divergence"].as_str()),
            (Outcome::Pass, Some("r"))
        );
    }
}
