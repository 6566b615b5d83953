//! Planted bugs: each sample (`programs/src/bpf/<module>.bpf.c`) may hold one realistic bug behind
//! `#ifdef BPFCONF_MUTANT /* what is wrong */`, built in when `BPFCONF_MUTANTS=1`. A bug is caught
//! when a case of its module (`<module>::…`) that passes in the normal build fails or errs in the
//! mutant build; a case that already failed without the mutant proves nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use record::{Outcome, Record};

use crate::table::Table;

/// The line that opens a planted bug; the comment after it says what the bug is.
const MARKER: &str = "#ifdef BPFCONF_MUTANT";

/// One planted bug.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planted {
    /// The module it belongs to: the sample's name (its file name without `.bpf.c`), which
    /// [`module_for`] maps to the test module that loads it.
    pub module: String,
    /// The sample's file name.
    pub file: String,
    /// The line of its `#ifdef BPFCONF_MUTANT` (1-based).
    pub line: usize,
    /// The comment on that line.
    pub description: String,
}

/// Every planted bug of the samples in `dir` (`*.bpf.c`), by file name and line.
pub fn planted(dir: &Path) -> Result<Vec<Planted>> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for path in files {
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        all.extend(parse(&file, &text)?);
    }
    Ok(all)
}

/// The planted bugs of sample `file`; a marker without its `/* … */` description is an error.
pub fn parse(file: &str, text: &str) -> Result<Vec<Planted>> {
    let module = file.trim_end_matches(".bpf.c");
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix(MARKER) else {
            continue;
        };
        let description = rest
            .trim()
            .strip_prefix("/*")
            .and_then(|r| r.strip_suffix("*/"))
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .with_context(|| {
                format!(
                    "{file}:{}: `{MARKER}` needs the bug's description as `/* … */` on its line",
                    i + 1
                )
            })?;
        found.push(Planted {
            module: module.to_owned(),
            file: file.to_owned(),
            line: i + 1,
            description: description.to_owned(),
        });
    }
    Ok(found)
}

/// The test module a sample's bug belongs to: the sample's own name when a module of that name
/// has cases, else its longest `_`-prefix that does (`freplace_ext` → `freplace`, whose test
/// loads it).
pub fn module_for(sample: &str, modules: &BTreeSet<String>) -> String {
    let mut name = sample;
    loop {
        if modules.contains(name) {
            return name.to_owned();
        }
        match name.rsplit_once('_') {
            Some((shorter, _)) => name = shorter,
            None => return sample.to_owned(),
        }
    }
}

/// The modules of `records`' cases (`xdp::drops` → `xdp`).
pub fn modules(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .filter_map(|r| r.case.split_once("::").map(|(m, _)| m.to_owned()))
        .collect()
}

/// What the mutant run showed of one planted bug.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// These cases passed without the mutant and failed with it.
    Caught(Vec<String>),
    /// No case that passes without the mutant failed with it.
    Missed,
    /// Nothing here can tell (why).
    NotJudged(String),
}

/// The judgement of one module: the verdict, and its cases that failed without the mutant too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Judgement {
    pub verdict: Verdict,
    /// Cases that failed (or erred) in the normal run as well: not counted.
    pub failing_anyway: Vec<String>,
}

/// Judges `module` from the records of the mutant run and of the normal run (one kernel each).
pub fn judge(module: &str, mutant: &[Record], normal: &[Record]) -> Judgement {
    let prefix = format!("{module}::");
    let of = |records: &[Record]| -> BTreeMap<String, (Outcome, Option<String>)> {
        records
            .iter()
            .filter(|r| r.case.starts_with(&prefix))
            .map(|r| (r.case.clone(), (r.outcome, r.reason.clone())))
            .collect()
    };
    let (mutant, normal) = (of(mutant), of(normal));
    let bad = |o: Outcome| matches!(o, Outcome::Fail | Outcome::Error);
    let mut caught = Vec::new();
    let mut failing_anyway = Vec::new();
    for (case, (outcome, _)) in &mutant {
        if !bad(*outcome) {
            continue;
        }
        match normal.get(case) {
            Some((Outcome::Pass, _)) => caught.push(case.clone()),
            _ => failing_anyway.push(case.clone()),
        }
    }
    let verdict = if !caught.is_empty() {
        Verdict::Caught(caught)
    } else if mutant.is_empty() {
        Verdict::NotJudged(format!("no case `{prefix}…` ran"))
    } else if mutant.values().all(|(o, _)| *o == Outcome::Unsupported) {
        let reason = mutant.values().find_map(|(_, r)| r.clone());
        Verdict::NotJudged(format!(
            "every case unsupported{}",
            reason.map_or(String::new(), |r| format!(" ({})", first_line(&r)))
        ))
    } else {
        Verdict::Missed
    };
    Judgement {
        verdict,
        failing_anyway,
    }
}

/// The start of a reason: its first line, at most [`REASON_CHARS`] characters of it.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    match line.char_indices().nth(REASON_CHARS) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// How much of an `unsupported` reason the table shows (the records hold it whole).
const REASON_CHARS: usize = 100;

/// The table: module | planted bug | caught by | verdict.
pub fn markdown(judged: &[(Planted, Judgement)]) -> String {
    let mut table = Table::new(["module", "planted bug", "caught by", "verdict"]);
    for (bug, j) in judged {
        let mut caught_by = match &j.verdict {
            Verdict::Caught(cases) => cases
                .iter()
                .map(|c| strip(c))
                .collect::<Vec<_>>()
                .join(", "),
            _ => "—".to_owned(),
        };
        if !j.failing_anyway.is_empty() {
            let cases: Vec<&str> = j.failing_anyway.iter().map(|c| strip(c)).collect();
            caught_by.push_str(&format!(
                " (failed without the mutant too, not counted: {})",
                cases.join(", ")
            ));
        }
        let verdict = match &j.verdict {
            Verdict::Caught(_) => "caught".to_owned(),
            Verdict::Missed => "MISSED".to_owned(),
            Verdict::NotJudged(why) => format!("not judged here: {why}"),
        };
        table.row([
            bug.module.clone(),
            format!("{} (`{}:{}`)", bug.description, bug.file, bug.line),
            caught_by,
            verdict,
        ]);
    }
    table.to_string()
}

/// A case id without its module (`xdp::drops` → `drops`).
fn strip(case: &str) -> &str {
    case.split_once("::").map_or(case, |(_, t)| t)
}

/// Whether every planted bug was caught or cannot be judged here.
pub fn none_missed(judged: &[(Planted, Judgement)]) -> bool {
    judged.iter().all(|(_, j)| j.verdict != Verdict::Missed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(case: &str, outcome: Outcome) -> Record {
        let reason = (outcome != Outcome::Pass).then(|| format!("{outcome} because\nmore"));
        Record::runner("host-6.18", case, outcome, reason)
    }

    #[test]
    fn parses_each_marker_with_its_line_and_description() {
        let text = "int x;\n#ifdef BPFCONF_MUTANT /* returns PASS instead of DROP */\n\treturn 2;\n\
                    #else\n\treturn 1;\n#endif\n  #ifdef BPFCONF_MUTANT   /*  counts twice */\n";
        let found = parse("xdp.bpf.c", text).unwrap();
        assert_eq!(
            found,
            vec![
                Planted {
                    module: "xdp".into(),
                    file: "xdp.bpf.c".into(),
                    line: 2,
                    description: "returns PASS instead of DROP".into(),
                },
                Planted {
                    module: "xdp".into(),
                    file: "xdp.bpf.c".into(),
                    line: 7,
                    description: "counts twice".into(),
                },
            ]
        );
        assert_eq!(
            parse("a.bpf.c", "#ifndef BPFCONF_MUTANTS\n").unwrap(),
            vec![]
        );
    }

    #[test]
    fn a_marker_without_a_description_is_refused() {
        for text in [
            "#ifdef BPFCONF_MUTANT\n",
            "#ifdef BPFCONF_MUTANT /* */\n",
            "#ifdef BPFCONF_MUTANT // why\n",
        ] {
            let e = parse("xdp.bpf.c", text).unwrap_err().to_string();
            assert!(e.starts_with("xdp.bpf.c:1: "), "{e}");
        }
    }

    #[test]
    fn a_long_reason_is_cut() {
        let long = "x".repeat(150);
        assert_eq!(
            first_line(&format!("{long}\nsecond")),
            format!("{}…", &long[..100])
        );
        assert_eq!(first_line("short\nsecond"), "short");
    }

    #[test]
    fn a_sample_without_a_test_module_of_its_own_belongs_to_its_prefix() {
        let modules = modules(&[
            record("freplace::replaces", Outcome::Pass),
            record("netkit_peer::drops", Outcome::Pass),
            record("netkit::drops", Outcome::Pass),
        ]);
        assert_eq!(module_for("freplace_ext", &modules), "freplace");
        assert_eq!(module_for("netkit_peer", &modules), "netkit_peer");
        assert_eq!(module_for("netkit", &modules), "netkit");
        assert_eq!(module_for("lirc_mode2", &modules), "lirc_mode2");
    }

    #[test]
    fn caught_only_by_cases_that_pass_without_the_mutant() {
        let mutant = [
            record("xdp::drops", Outcome::Fail),
            record("xdp::flaky", Outcome::Error),
            record("xdp::counts", Outcome::Pass),
            record("xdp_link::drops", Outcome::Fail),
        ];
        let normal = [
            record("xdp::drops", Outcome::Pass),
            record("xdp::flaky", Outcome::Fail),
            record("xdp::counts", Outcome::Pass),
        ];
        let j = judge("xdp", &mutant, &normal);
        assert_eq!(j.verdict, Verdict::Caught(vec!["xdp::drops".into()]));
        assert_eq!(j.failing_anyway, vec!["xdp::flaky".to_owned()]);
    }

    #[test]
    fn a_failure_that_happens_without_the_mutant_is_a_miss() {
        let mutant = [
            record("kprobe::fires", Outcome::Fail),
            record("kprobe::counts", Outcome::Pass),
        ];
        let normal = [
            record("kprobe::fires", Outcome::Fail),
            record("kprobe::counts", Outcome::Pass),
        ];
        let j = judge("kprobe", &mutant, &normal);
        assert_eq!(j.verdict, Verdict::Missed);
        assert_eq!(j.failing_anyway, vec!["kprobe::fires".to_owned()]);
        // A case the normal run has no record of proves nothing either.
        assert_eq!(judge("kprobe", &mutant, &[]).verdict, Verdict::Missed);
    }

    #[test]
    fn all_unsupported_or_nothing_ran_is_not_judged() {
        let mutant = [
            record("lirc_mode2::decodes", Outcome::Unsupported),
            record("lirc_mode2::repeats", Outcome::Unsupported),
        ];
        assert_eq!(
            judge("lirc_mode2", &mutant, &mutant).verdict,
            Verdict::NotJudged("every case unsupported (unsupported because)".into())
        );
        assert_eq!(
            judge("lwt", &mutant, &mutant).verdict,
            Verdict::NotJudged("no case `lwt::…` ran".into())
        );
        // Some unsupported, the rest passing: the bug went through.
        let mixed = [
            record("lwt::a", Outcome::Unsupported),
            record("lwt::b", Outcome::Pass),
        ];
        assert_eq!(judge("lwt", &mixed, &mixed).verdict, Verdict::Missed);
    }

    #[test]
    fn the_table_names_the_bug_its_place_and_the_cases() {
        let bug = |module: &str| Planted {
            module: module.into(),
            file: format!("{module}.bpf.c"),
            line: 12,
            description: "returns PASS | not DROP".into(),
        };
        let judged = vec![
            (
                bug("xdp"),
                Judgement {
                    verdict: Verdict::Caught(vec!["xdp::drops".into(), "xdp::counts".into()]),
                    failing_anyway: vec!["xdp::flaky".into()],
                },
            ),
            (
                bug("kprobe"),
                Judgement {
                    verdict: Verdict::Missed,
                    failing_anyway: vec![],
                },
            ),
            (
                bug("lirc_mode2"),
                Judgement {
                    verdict: Verdict::NotJudged("every case unsupported".into()),
                    failing_anyway: vec![],
                },
            ),
        ];
        assert_eq!(
            markdown(&judged),
            "| module | planted bug | caught by | verdict |\n|---|---|---|---|\n\
             | xdp | returns PASS \\| not DROP (`xdp.bpf.c:12`) | drops, counts (failed without \
             the mutant too, not counted: flaky) | caught |\n\
             | kprobe | returns PASS \\| not DROP (`kprobe.bpf.c:12`) | — | MISSED |\n\
             | lirc_mode2 | returns PASS \\| not DROP (`lirc_mode2.bpf.c:12`) | — | not judged \
             here: every case unsupported |\n"
        );
        assert!(!none_missed(&judged));
        assert!(none_missed(&judged[..1]));
        assert!(none_missed(&judged[2..]));
    }
}
