//! `bpfconf compare` and `bpfconf baseline` on a real run (tests/data/run: records of the host and
//! of 6.1 made by the suite) against doctored copies of it: every kind of change is reported, and
//! only regressions (a cell that got worse, a case or a column that disappeared) exit 1.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const HOST: &str = "host-6.18";

/// A copy of the real run to doctor.
struct Copy {
    dir: tempfile::TempDir,
}

impl Copy {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/run");
        for column in fs::read_dir(&data).unwrap() {
            let column = column.unwrap().path();
            let to = dir.path().join(column.file_name().unwrap());
            fs::create_dir(&to).unwrap();
            for file in fs::read_dir(&column).unwrap() {
                let file = file.unwrap().path();
                fs::copy(&file, to.join(file.file_name().unwrap())).unwrap();
            }
        }
        Copy { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self, kernel: &str, case: &str) -> PathBuf {
        self.path()
            .join(kernel)
            .join(format!("{}.json", case.replace("::", "__")))
    }

    /// Changes the record of `case` on `kernel` with `edit`.
    fn edit(&self, kernel: &str, case: &str, edit: impl FnOnce(&mut Value)) {
        let file = self.file(kernel, case);
        let mut record: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        edit(&mut record);
        fs::write(&file, serde_json::to_string(&record).unwrap()).unwrap();
    }

    /// A new case: a copy of `case`'s record on `kernel` under the id (and test name) `new`.
    fn add(&self, kernel: &str, case: &str, new: &str) {
        fs::copy(self.file(kernel, case), self.file(kernel, new)).unwrap();
        self.edit(kernel, new, |r| {
            r["case"] = new.into();
            r["test"] = new.into();
        });
    }

    fn remove(&self, kernel: &str, case: &str) {
        fs::remove_file(self.file(kernel, case)).unwrap();
    }
}

/// What `bpfconf compare` or `baseline check` gave: its exit code, the Markdown (stdout), and
/// the JSON, HTML and JUnit XML it wrote.
struct Out {
    code: i32,
    md: String,
    report: Value,
    html: String,
    junit: String,
}

/// `bpfconf ARGS…` writing every format: Markdown on stdout, the others to files. Checks what
/// holds for every comparison: the page is one self-contained document in the report's look
/// that counts the regressions, and the JUnit failures are exactly the regressions.
fn bpfconf(args: &[&str]) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);
    let out = Command::new(env!("CARGO_BIN_EXE_bpfconf"))
        .args(args)
        .arg("--json")
        .arg(file("compare.json"))
        .arg("--html")
        .arg(file("compare.html"))
        .arg("--junit")
        .arg(file("junit.xml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    // Only the files written: no record went unread.
    let others: Vec<&str> = (stderr.lines())
        .filter(|l| !l.starts_with("bpfconf: wrote "))
        .collect();
    assert!(others.is_empty(), "{stderr}");
    let read = |name: &str| fs::read_to_string(file(name)).unwrap();
    let (html, junit) = (read("compare.html"), read("junit.xml"));
    let report: Value = serde_json::from_str(&read("compare.json")).unwrap();
    let regressions = report["regressions"].as_u64().unwrap() as usize;
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains(include_str!("../src/report/report.css")));
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    let s = if regressions == 1 { "" } else { "s" };
    assert!(
        html.contains(&format!(
            "<title>BPF conformance compare: {regressions} regression{s}</title>"
        )),
        "{html}"
    );
    assert!(junit.starts_with("<?xml"), "{junit}");
    assert_eq!(junit.matches("<failure ").count(), regressions, "{junit}");
    Out {
        code: out.status.code().unwrap(),
        md: stdout,
        report,
        html,
        junit,
    }
}

/// The JUnit testsuite of `kernel` (its opening tag to its end).
fn suite<'a>(junit: &'a str, kernel: &str) -> &'a str {
    let start = junit
        .find(&format!("<testsuite name=\"{kernel}\""))
        .unwrap_or_else(|| panic!("no testsuite {kernel}: {junit}"));
    let rest = &junit[start..];
    &rest[..rest.find("</testsuite>").unwrap()]
}

fn compare(old: &Copy, new: &Copy) -> Out {
    bpfconf(&[
        "compare",
        old.path().to_str().unwrap(),
        new.path().to_str().unwrap(),
    ])
}

/// The entries of the report's list `key` as (case, kernel, `field`) strings.
fn entries(report: &Value, key: &str, field: &str) -> Vec<(String, String, String)> {
    report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |v: &Value| v.as_str().map_or(v.to_string(), str::to_owned);
            (s(&e["case"]), s(&e["kernel"]), s(&e[field]))
        })
        .collect()
}

fn triple(case: &str, kernel: &str, x: &str) -> (String, String, String) {
    (case.into(), kernel.into(), x.into())
}

#[test]
fn an_unchanged_run_has_nothing_to_report() {
    let run = Copy::new();
    let Out {
        code,
        md,
        report,
        html,
        junit,
    } = compare(&run, &run);
    assert_eq!(code, 0, "{md}");
    assert!(
        html.contains("<h2 id=\"regressions\">Regressions</h2><p>None.</p>"),
        "{html}"
    );
    assert!(
        !html.contains("role=\"alert\"") && !html.contains("id=\"stats\""),
        "{html}"
    );
    // Every case of each column a passing testcase.
    for kernel in [HOST, "6.1"] {
        let cases = fs::read_dir(run.path().join(kernel)).unwrap().count();
        let tag = format!(
            r#"<testsuite name="{kernel}" tests="{cases}" skipped="0" errors="0" failures="0">"#
        );
        assert!(junit.contains(&tag), "{tag}: {junit}");
    }
    assert_eq!(report["schema"], 1);
    assert_eq!(report["regressions"], 0);
    for key in [
        "outcomes",
        "stats",
        "log_diffs",
        "run_cost",
        "removed_columns",
    ] {
        assert_eq!(report[key], Value::Array(Vec::new()), "{key}: {md}");
    }
    // Statistics and run costs were there to compare.
    assert!(report["programs_compared"].as_u64().unwrap() >= 10, "{md}");
    // The host's natively, 6.1's (under TCG here) not.
    assert_eq!(report["costs_compared"], 2, "{md}");
    assert_eq!(report["costs_emulated"], 2, "{md}");
}

/// Fix, new case, statistics over and under the threshold, a run cost beyond and one within the
/// noise band, a changed key line: all reported, exit 0.
#[test]
fn changes_that_are_not_regressions_are_reported_and_pass() {
    let (old, new) = (Copy::new(), Copy::new());
    // Fix: unsupported → pass.
    new.edit(HOST, "verifier::subprog_call_unpriv", |r| {
        r["outcome"] = "pass".into();
        r["reason"] = Value::Null;
    });
    for kernel in [HOST, "6.1"] {
        new.add(
            kernel,
            "xdp::test_run_drops_udp_to_drop_port",
            "xdp::test_run_new_row",
        );
    }
    let insns = |r: &mut Value, object: usize, program: &str, delta: i64| {
        let stats = &mut r["loads"][object]["programs"][program]["stats"];
        stats["processed_insns"] = (stats["processed_insns"].as_i64().unwrap() + delta).into();
    };
    // 115 → 130 insns (+13 %): flagged; 131 → 133 (+1.5 %): not.
    new.edit(HOST, "socket_filter::test_run_drops_tcp", |r| {
        insns(r, 0, "udp_marker_filter", 15)
    });
    new.edit(HOST, "xdp::test_run_drops_udp_to_drop_port", |r| {
        insns(r, 0, "xdp_udp_verdicts", 2)
    });
    // Run cost doubled (beyond the band); +1 ns on the other (within it).
    new.edit(HOST, "socket_filter::test_run_drops_tcp", |r| {
        let m = &mut r["run_cost"]["udp_marker_filter"]["ns_per_run_median"];
        *m = (m.as_f64().unwrap() * 2.0).into();
    });
    new.edit(HOST, "xdp::test_run_drops_udp_to_drop_port", |r| {
        let m = &mut r["run_cost"]["xdp_udp_verdicts"]["ns_per_run_median"];
        *m = (m.as_f64().unwrap() + 1.0).into();
    });
    // The verifier's complaint changed (the rule still passes: it is refused either way).
    new.edit("6.1", "verifier::pointer_multiply", |r| {
        let load = &mut r["loads"][0];
        load["message"] = "R1 pointer arithmetic prohibited".into();
        let log = load["programs"]["pointer_multiply"]["log"]
            .as_str()
            .unwrap();
        let log = log.replace("with *= operator prohibited", "prohibited");
        load["programs"]["pointer_multiply"]["log"] = log.into();
    });

    let Out {
        code,
        md,
        report,
        html,
        junit,
    } = compare(&old, &new);
    assert_eq!(code, 0, "{md}");
    assert_eq!(report["regressions"], 0, "{md}");
    assert_eq!(
        entries(&report, "outcomes", "kind"),
        [
            triple("verifier::subprog_call_unpriv", HOST, "fix"),
            triple("xdp::test_run_new_row", "6.1", "added"),
            triple("xdp::test_run_new_row", HOST, "added"),
        ],
        "{md}"
    );
    assert_eq!(
        entries(&report, "stats", "flagged"),
        [
            triple("socket_filter::test_run_drops_tcp", HOST, "true"),
            triple("xdp::test_run_drops_udp_to_drop_port", HOST, "false"),
        ],
        "{md}"
    );
    assert_eq!(
        entries(&report, "run_cost", "program"),
        [triple(
            "socket_filter::test_run_drops_tcp",
            HOST,
            "socket_filter_b/udp_marker_filter"
        )],
        "{md}"
    );
    assert_eq!(
        entries(&report, "log_diffs", "new_key_line"),
        [triple(
            "verifier::pointer_multiply",
            "6.1",
            "R1 pointer arithmetic prohibited"
        )],
        "{md}"
    );
    // A wider threshold leaves the 13 % change unflagged.
    let Out {
        md: wide_md,
        report: wide,
        ..
    } = bpfconf(&[
        "compare",
        old.path().to_str().unwrap(),
        new.path().to_str().unwrap(),
        "--threshold",
        "20",
    ]);
    assert_eq!(wide["stats"][0]["flagged"], false, "{wide_md}");
    let diff = report["log_diffs"][0]["diff"].as_str().unwrap();
    assert!(
        diff.contains("-R1 pointer arithmetic with *= operator prohibited")
            && diff.contains("+R1 pointer arithmetic prohibited"),
        "{diff}"
    );
    for shown in [
        "**0 regressions**",
        "### Fixes",
        "| verifier::subprog_call_unpriv | host-6.18 | unsupported | pass |",
        "### New cases",
        "| xdp::test_run_new_row | host-6.18 | — | pass |",
        "| socket_filter::test_run_drops_tcp | socket_filter_b/udp_marker_filter | host-6.18 | insns | 115 | 130 | +15 (+13.04%) | ⚠ |",
        "| xdp::test_run_drops_udp_to_drop_port | xdp_bpf/xdp_udp_verdicts | host-6.18 | insns | 131 | 133 | +2 (+1.53%) |  |",
        "### Run cost beyond the noise band",
        "+R1 pointer arithmetic prohibited",
    ] {
        assert!(md.contains(shown), "missing {shown:?} in:\n{md}");
    }
    // The page: the same changes, the flagged row highlighted, the log diff's lines coloured.
    for shown in [
        r#"<h2 id="regressions">Regressions</h2><p>None.</p>"#,
        r#"<th scope="row"><code>verifier::subprog_call_unpriv</code></th><td>host-6.18</td><td>better</td><td class="cell o-unsupported">unsupported</td><td class="cell o-pass">pass</td>"#,
        r#"<th scope="row"><code>xdp::test_run_new_row</code></th><td>6.1</td><td>new case</td><td class="cell o-none">—</td><td class="cell o-pass">pass</td>"#,
        r#"<tr class="flagged"><th scope="row"><code>socket_filter::test_run_drops_tcp</code></th><td><code>socket_filter_b/udp_marker_filter</code></td><td>host-6.18</td><td>insns</td><td class="num">115</td><td class="num">130</td><td class="num">+15 (+13.04%)</td><td class="flag">⚠</td></tr>"#,
        r#"<tr><th scope="row"><code>xdp::test_run_drops_udp_to_drop_port</code></th><td><code>xdp_bpf/xdp_udp_verdicts</code></td><td>host-6.18</td><td>insns</td><td class="num">131</td><td class="num">133</td><td class="num">+2 (+1.53%)</td><td class="flag"></td></tr>"#,
        r#"<span class="del">-R1 pointer arithmetic with *= operator prohibited"#,
        r#"<span class="add">+R1 pointer arithmetic prohibited"#,
        r#"<h2 id="costs">Run cost beyond the noise band</h2>"#,
        r#"<td><code>socket_filter_b/udp_marker_filter</code></td><td>host-6.18</td><td class="num">"#,
    ] {
        assert!(html.contains(shown), "missing {shown:?} in:\n{html}");
    }
    // JUnit: every case of B passes (nothing regressed); the changes ride along.
    let host = suite(&junit, HOST);
    let cases = fs::read_dir(new.path().join(HOST)).unwrap().count();
    assert!(
        host.starts_with(&format!(
            r#"<testsuite name="{HOST}" tests="{cases}" skipped="0" errors="0" failures="0">"#
        )),
        "{host}"
    );
    for shown in [
        "<system-out>fix: unsupported → pass\n",
        "<system-out>new case: — → pass\n",
        "socket_filter_b/udp_marker_filter insns: 115 → 130 +15 (+13.04%) ⚠\n",
        "socket_filter_b/udp_marker_filter run cost: ",
    ] {
        assert!(host.contains(shown), "missing {shown:?} in:\n{host}");
    }
    assert!(
        suite(&junit, "6.1")
            .contains("pointer_multiply: refused (EACCES) → refused (EACCES), key line"),
        "{junit}"
    );
    // `--markdown FILE`: the Markdown there instead of stdout.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("compare.md");
    let Out { md: stdout, .. } = bpfconf(&[
        "compare",
        old.path().to_str().unwrap(),
        new.path().to_str().unwrap(),
        "--markdown",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        (stdout.as_str(), fs::read_to_string(&file).unwrap()),
        ("", md)
    );
}

/// Each regression alone exits 1, and is reported as what it is.
#[test]
fn each_regression_fails_the_comparison() {
    let old = Copy::new();
    let worse = Copy::new();
    worse.edit(HOST, "xdp::test_run_drops_udp_to_drop_port", |r| {
        r["outcome"] = "fail".into();
        r["reason"] = "return value of xdp_udp_verdicts".into();
    });
    let removed_case = Copy::new();
    for kernel in [HOST, "6.1"] {
        removed_case.remove(kernel, "btf::loads_without_btf");
    }
    let removed_column = Copy::new();
    fs::remove_dir_all(removed_column.path().join("6.1")).unwrap();

    let Out {
        code,
        md,
        report,
        html,
        junit,
    } = compare(&old, &worse);
    assert_eq!((code, report["regressions"].as_u64()), (1, Some(1)), "{md}");
    assert!(
        html.contains(r#"<td>worse</td><td class="cell o-pass">pass</td><td class="cell o-fail">fail</td><td><pre>return value of xdp_udp_verdicts</pre></td>"#),
        "{html}"
    );
    assert!(html.contains(r#"<div class="banner" role="alert"><strong>1 regression</strong>"#));
    assert!(
        suite(&junit, HOST).contains(
            r#"<failure message="regression on host-6.18: pass → fail: return value of xdp_udp_verdicts" type="regression">"#
        ),
        "{junit}"
    );
    assert_eq!(
        entries(&report, "outcomes", "kind"),
        [triple(
            "xdp::test_run_drops_udp_to_drop_port",
            HOST,
            "regression"
        )]
    );
    assert!(md.contains("### Regressions\n"), "{md}");

    let Out {
        code,
        md,
        report,
        junit,
        ..
    } = compare(&old, &removed_case);
    assert_eq!((code, report["regressions"].as_u64()), (1, Some(2)), "{md}");
    for kernel in [HOST, "6.1"] {
        let removed = format!(
            r#"<testcase name="btf::loads_without_btf" classname="btf">
            <failure message="case removed on {kernel}: pass → —" type="removed"/>"#
        );
        assert!(suite(&junit, kernel).contains(&removed), "{junit}");
    }
    assert_eq!(
        entries(&report, "outcomes", "kind"),
        [
            triple("btf::loads_without_btf", "6.1", "removed"),
            triple("btf::loads_without_btf", HOST, "removed"),
        ]
    );

    let Out {
        code,
        md,
        report,
        html,
        junit,
    } = compare(&old, &removed_column);
    assert_eq!((code, report["regressions"].as_u64()), (1, Some(1)), "{md}");
    assert!(
        html.contains("column <strong>6.1</strong> removed: "),
        "{html}"
    );
    assert!(
        suite(&junit, "6.1").contains(r#"<testcase name="column" classname="runner">"#),
        "{junit}"
    );
    assert_eq!(report["removed_columns"], serde_json::json!(["6.1"]));
    assert!(md.contains("column **6.1** removed"), "{md}");
}

/// A column of another kernel build (same id and release, another build id: another machine's
/// host kernel) is not compared: a cell that got worse there is no regression, and every format
/// says once that the column was left out.
#[test]
fn another_build_of_a_column_is_not_compared_and_every_format_says_so() {
    let build = |id: &str| serde_json::json!({"build_id": id, "config_sha256": "c0", "version": "Linux version 6.1.0-50-amd64"});
    let (old, new) = (Copy::new(), Copy::new());
    for (copy, id) in [(&old, "aaaa"), (&new, "bbbb")] {
        for file in fs::read_dir(copy.path().join("6.1")).unwrap() {
            let file = file.unwrap().path();
            let mut record: Value =
                serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
            record["build"] = build(id);
            fs::write(&file, serde_json::to_string(&record).unwrap()).unwrap();
        }
    }
    new.edit("6.1", "xdp::test_run_drops_udp_to_drop_port", |r| {
        r["outcome"] = "fail".into();
        r["reason"] = "another build's answer".into();
    });
    let Out {
        code,
        md,
        report,
        html,
        junit,
    } = compare(&old, &new);
    assert_eq!((code, report["regressions"].as_u64()), (0, Some(0)), "{md}");
    let note = "another build than";
    let notes: Vec<&str> = (report["notes"].as_array().unwrap().iter())
        .filter_map(Value::as_str)
        .collect();
    assert!(
        notes.len() == 1 && notes[0].starts_with("6.1") && notes[0].contains(note),
        "{notes:?}"
    );
    assert!(
        notes[0].contains("build id aaaa") || notes[0].contains("aaaa"),
        "{notes:?}"
    );
    assert_eq!(md.matches(note).count(), 1, "{md}");
    assert_eq!(html.matches(note).count(), 1, "{html}");
    assert!(junit.contains(note), "{junit}");
}

/// The baseline keeps outcomes and verifier statistics: a check reports statistics beyond the
/// threshold and passes, and fails on a regression.
#[test]
fn baseline_check_fails_on_regressions_only() {
    let run = Copy::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("baseline.json");
    let file = file.to_str().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bpfconf"))
        .args([
            "baseline",
            "accept",
            run.path().to_str().unwrap(),
            "--file",
            file,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = fs::read_to_string(file).unwrap();
    assert!(
        text.contains(r#""socket_filter::test_run_drops_tcp": {"outcome":"pass","programs":{"socket_filter_b/udp_marker_filter":{"insns":115,"#),
        "{text}"
    );
    let check = |run: &Copy| {
        bpfconf(&[
            "baseline",
            "check",
            run.path().to_str().unwrap(),
            "--file",
            file,
        ])
    };
    let Out {
        code, md, report, ..
    } = check(&run);
    assert_eq!(
        (code, &report["stats"]),
        (0, &Value::Array(Vec::new())),
        "{md}"
    );

    let grown = Copy::new();
    grown.edit(HOST, "socket_filter::test_run_drops_tcp", |r| {
        r["loads"][0]["programs"]["udp_marker_filter"]["stats"]["total_states"] = 100.into();
    });
    let Out {
        code, md, report, ..
    } = check(&grown);
    assert_eq!(code, 0, "{md}");
    assert_eq!(
        entries(&report, "stats", "metric"),
        [triple("socket_filter::test_run_drops_tcp", HOST, "states")],
        "{md}"
    );

    grown.edit("6.1", "verifier::subprog_call", |r| {
        r["outcome"] = "error".into()
    });
    let Out {
        code,
        md,
        report,
        junit,
        ..
    } = check(&grown);
    assert_eq!((code, report["regressions"].as_u64()), (1, Some(1)), "{md}");
    assert!(
        suite(&junit, "6.1")
            .contains(r#"<failure message="regression on 6.1: pass → error" type="regression"/>"#),
        "{junit}"
    );
}
