//! Every path that can end a case `unsupported` has a floor: the feature ids the sources of the
//! tests and the harness name, and the files that may build `unsupported` themselves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use libbpf_rs::ProgramType;
use regex::Regex;

use super::super::*;
use crate::kernel::prog_type_name;

fn sources() -> Vec<(PathBuf, String)> {
    let root = crate::workspace_root();
    let mut files = Vec::new();
    let mut dirs = vec![root.join("tests"), root.join("harness/testkit/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("source directory") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("source file");
                files.push((path, text));
            }
        }
    }
    assert!(files.len() > 40, "found only {} source files", files.len());
    files
}

/// The `ProgramType` variants the suite names (all of them must be mapped here).
fn program_type(variant: &str) -> ProgramType {
    use ProgramType::*;
    match variant {
        "SocketFilter" => SocketFilter,
        "Kprobe" => Kprobe,
        "SchedCls" => SchedCls,
        "SchedAct" => SchedAct,
        "Tracepoint" => Tracepoint,
        "Xdp" => Xdp,
        "PerfEvent" => PerfEvent,
        "CgroupSkb" => CgroupSkb,
        "CgroupSock" => CgroupSock,
        "LwtIn" => LwtIn,
        "LwtOut" => LwtOut,
        "LwtXmit" => LwtXmit,
        "SockOps" => SockOps,
        "SkSkb" => SkSkb,
        "CgroupDevice" => CgroupDevice,
        "SkMsg" => SkMsg,
        "RawTracepoint" => RawTracepoint,
        "CgroupSockAddr" => CgroupSockAddr,
        "LwtSeg6local" => LwtSeg6local,
        "SkReuseport" => SkReuseport,
        "FlowDissector" => FlowDissector,
        "CgroupSysctl" => CgroupSysctl,
        "CgroupSockopt" => CgroupSockopt,
        "SkLookup" => SkLookup,
        "Netfilter" => Netfilter,
        "Tracing" => Tracing,
        "Syscall" => Syscall,
        "LircMode2" => LircMode2,
        "StructOps" => StructOps,
        "Ext" => Ext,
        "Lsm" => Lsm,
        "RawTracepointWritable" => RawTracepointWritable,
        other => panic!("ProgramType::{other} is used: map it here and give it a floor"),
    }
}

/// Feature ids named in the sources: literal ids given to the floors, and those the probes and
/// the test-run mapping derive from their arguments.
fn ids_in(text: &str) -> BTreeSet<String> {
    type IdOf = fn(&regex::Captures) -> String;
    let patterns: &[(&str, IdOf)] = &[
        (r#"floors::\w+\(\s*"([^"]+)""#, |c| c[1].to_owned()),
        // Ids handed around before they reach the floors (`"isa.v4"`).
        (
            r#""((?:prog_type|attach_type|helper|kfunc|struct_ops|map_type|map_flag|map_op|test_run|isa|insn|verifier|object|tracepoint|pmu|ksym|perf|fs|sysctl|kconfig|platform)\.[\w/]+)""#,
            |c| c[1].to_owned(),
        ),
        (r#"test_run::(?:error|run)\(\s*"([^"]+)""#, |c| {
            format!("test_run.{}", &c[1])
        }),
        (r#"probe::tracepoint\(\s*"([^"]+)",\s*"([^"]+)""#, |c| {
            format!("tracepoint.{}/{}", &c[1], &c[2])
        }),
        (r#"probe::helper\([^;]*?"(bpf_\w+)""#, |c| {
            format!("helper.{}", &c[1])
        }),
        (
            r#"probe::config_(?:builtin|enabled)\(\s*"(CONFIG_\w+)""#,
            |c| format!("kconfig.{}", &c[1]),
        ),
        (r"ProgramType::(\w+)", |c| {
            format!("prog_type.{}", prog_type_name(program_type(&c[1])))
        }),
    ];
    let mut ids = BTreeSet::new();
    for (pattern, id) in patterns {
        let re = Regex::new(pattern).unwrap();
        ids.extend(re.captures_iter(text).map(|c| id(&c)));
    }
    // A file that test-runs by a type it computes (or through test_run::Row, by the type of the
    // row's case) needs test-run rows for every type it names.
    if Regex::new(r#"test_run::(?:error|run)\(\s*[^"\s]|test_run::Row"#)
        .unwrap()
        .is_match(text)
    {
        let types: Vec<String> = ids
            .iter()
            .filter_map(|id| id.strip_prefix("prog_type."))
            .map(|ty| format!("test_run.{ty}"))
            .collect();
        ids.extend(types);
    }
    ids
}

#[test]
fn every_feature_the_sources_name_has_a_floor() {
    let mut named = BTreeSet::new();
    for (path, text) in sources() {
        // This module's own tests name made-up ids.
        if path.ends_with("floors/tests.rs") {
            continue;
        }
        for id in ids_in(&text) {
            named.insert(id.clone());
            assert!(
                table().contains_key(&id),
                "{}: {id} has no row in kernels/floors.toml",
                path.display()
            );
        }
    }
    // The scan really sees the probes and the test-run rows.
    for id in [
        "prog_type.xdp",
        "prog_type.lwt_seg6local",
        "test_run.socket_filter",
        "test_run.lwt_xmit",
        "helper.bpf_msg_redirect_hash",
        "tracepoint.syscalls/sys_enter_execve",
        "kconfig.CONFIG_NET_ACT_BPF",
        "isa.v4",
        "verifier.bounded_loops",
        "platform.tcg_text_patching",
        "platform.hardware_pmu",
    ] {
        assert!(named.contains(id), "the scan found no use of {id}");
    }
}

#[test]
fn config_probes_and_their_rows_agree_on_built_in() {
    let re = Regex::new(r#"probe::config_(builtin|enabled)\(\s*"(CONFIG_\w+)""#).unwrap();
    for (path, text) in sources() {
        for c in re.captures_iter(&text) {
            let (kind, option) = (&c[1], &c[2]);
            let row = &table()[&format!("kconfig.{option}")];
            let want = if kind == "builtin" {
                format!("{option}=y")
            } else {
                option.to_owned()
            };
            assert_eq!(
                row.config,
                [want],
                "{}: config_{kind}({option})",
                path.display()
            );
        }
    }
}

/// Files that may still build `unsupported` themselves, and why.
const OWN_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "harness/testkit/src/floors.rs",
        "the one place that decides",
    ),
    (
        "harness/testkit/src/outcome.rs",
        "defines CaseError::Unsupported",
    ),
    (
        "harness/testkit/src/case.rs",
        "known kernel bugs (kernels.toml), the lead's: not run, recorded unsupported",
    ),
    (
        "harness/testkit/src/ksyscall.rs",
        "its one caller, tests/suite/kprobe.rs, hands its answer to floors::judge",
    ),
];

#[test]
fn nothing_else_builds_unsupported() {
    let re = Regex::new(r"CaseError::(?:unsupported|Unsupported)\(").unwrap();
    let root = crate::workspace_root();
    for (path, text) in sources() {
        let rel = path.strip_prefix(&root).unwrap_or(&path).to_string_lossy();
        if rel.starts_with("harness/testkit/src/floors/")
            || OWN_UNSUPPORTED.iter().any(|(file, _)| rel == *file)
        {
            continue;
        }
        // Matching on the variant (`CaseError::Unsupported(_) =>`) is fine; building one is not.
        for line in text.lines().filter(|l| re.is_match(l)) {
            assert!(
                line.contains("=>") || line.contains("matches!"),
                "{rel} builds an unsupported outcome outside floors::missing: {}",
                line.trim()
            );
        }
    }
    let kprobe = std::fs::read_to_string(root.join("tests/suite/kprobe.rs")).unwrap();
    assert!(
        Regex::new(r#"floors::judge\(\s*"ksym\.syscall_entry""#)
            .unwrap()
            .is_match(&kprobe),
        "tests/suite/kprobe.rs must hand ksyscall::resolve's answer to floors::judge"
    );
    assert!(Path::new(&root.join("kernels/floors.toml")).is_file());
}
