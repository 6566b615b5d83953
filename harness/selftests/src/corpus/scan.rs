//! What a corpus build reads from the tree's sources: the programs that carry annotations, the
//! objects its prog_tests run through the test loader, the Makefile's per-file flags, the test
//! loader's constants, the helper names of its UAPI header and what `bpf_testmod` defines.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result, ensure};
use regex::Regex;

use super::selftests;
use crate::spec::Constants;

/// How the tree's prog_tests run an object through the test loader.
#[derive(Clone, Debug, Default)]
pub(super) struct LoaderRun {
    pub(super) without_sys_admin: bool,
    pub(super) hook: Option<String>,
}

/// What the build reads from the tree's sources.
pub(super) struct Scan {
    /// `progs/*.c` that use `bpf_misc.h`'s annotation macros.
    pub(super) annotated: BTreeSet<String>,
    /// Objects the prog_tests run through the test loader.
    pub(super) loader_runs: BTreeMap<String, LoaderRun>,
    /// Objects that `__btf_path` names (built, not run).
    pub(super) btf_paths: BTreeSet<String>,
    /// Per-file flags of the Makefile (`progs/X.c-CFLAGS := …`).
    pub(super) file_cflags: BTreeMap<String, Vec<String>>,
    pub(super) constants: Constants,
    pub(super) helpers: Vec<String>,
    pub(super) testmod: BTreeSet<String>,
}

impl Scan {
    pub(super) fn of(tree: &Path) -> Result<Scan> {
        let st = selftests(tree);
        let read =
            |p: &Path| fs::read_to_string(p).with_context(|| format!("reading {}", p.display()));
        let misc = read(&st.join("progs/bpf_misc.h"))?;
        let macros = annotation_macros(&misc);
        ensure!(
            !macros.is_empty(),
            "progs/bpf_misc.h defines no test annotations"
        );
        let uses = Regex::new(&format!(r"\b({})\b", macros.join("|")))?;
        let btf_path = Regex::new(r#"__btf_path\("([^"]+)\.bpf\.o"\)"#)?;
        let mut annotated = BTreeSet::new();
        let mut btf_paths = BTreeSet::new();
        for entry in fs::read_dir(st.join("progs"))? {
            let path = entry?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".c"))
            else {
                continue;
            };
            let text = read(&path)?;
            if uses.is_match(&text) {
                annotated.insert(name.to_owned());
                btf_paths.extend(btf_path.captures_iter(&text).map(|c| c[1].to_owned()));
            }
        }
        let mut loader_runs = BTreeMap::new();
        let run_tests = Regex::new(r"\bRUN_TESTS\((\w+)\)")?;
        let run = Regex::new(r"\bRUN\((\w+)\)")?;
        let aux = Regex::new(r#"run_tests_aux\(\s*"(\w+)"\s*,\s*\w+\s*,\s*(\w+)\s*\)"#)?;
        for entry in fs::read_dir(st.join("prog_tests"))? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "c") {
                continue;
            }
            let text = read(&path)?;
            for c in run_tests.captures_iter(&text) {
                loader_runs
                    .entry(c[1].to_owned())
                    .or_insert_with(LoaderRun::default);
            }
            // `RUN(skel)` is verifier.c's run_tests_aux without CAP_SYS_ADMIN.
            if text.contains("#define RUN(skel) run_tests_aux(") {
                for c in run.captures_iter(&text) {
                    loader_runs.insert(
                        c[1].to_owned(),
                        LoaderRun {
                            without_sys_admin: true,
                            hook: None,
                        },
                    );
                }
            }
            for c in aux.captures_iter(&text) {
                let hook = (&c[2] != "NULL").then(|| c[2].to_owned());
                loader_runs.insert(
                    c[1].to_owned(),
                    LoaderRun {
                        without_sys_admin: true,
                        hook,
                    },
                );
            }
        }
        Ok(Scan {
            annotated,
            loader_runs,
            btf_paths,
            file_cflags: file_cflags(&read(&st.join("Makefile"))?),
            constants: constants(&read(&st.join("test_loader.c"))?)?,
            helpers: helpers(&read(&tree.join("include/uapi/linux/bpf.h"))?),
            testmod: testmod(&st)?,
        })
    }
}

/// The annotation macros `bpf_misc.h` defines (those that emit a `comment:` decl tag).
fn annotation_macros(misc: &str) -> Vec<String> {
    let define = Regex::new(r"(?m)^#define\s+(__\w+)").expect("valid regex");
    let mut out = Vec::new();
    let lines: Vec<&str> = misc.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(c) = define.captures(line) else {
            continue;
        };
        let body = lines[i..]
            .iter()
            .take(3)
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        if body.contains("__test_tag(") || body.contains("btf_decl_tag(\"comment:") {
            out.push(c[1].to_owned());
        }
    }
    out.retain(|m| m != "__test_tag");
    out
}

/// `progs/X.c-CFLAGS := …` lines of the selftests' Makefile.
fn file_cflags(makefile: &str) -> BTreeMap<String, Vec<String>> {
    let re = Regex::new(r"(?m)^progs/(\w+)\.c-CFLAGS\s*:=\s*(.+)$").expect("valid regex");
    re.captures_iter(makefile)
        .map(|c| {
            (
                c[1].to_owned(),
                c[2].split_whitespace().map(str::to_owned).collect(),
            )
        })
        .collect()
}

/// `POINTER_VALUE`, `TEST_DATA_LEN` and the log buffer size of `test_loader.c`.
fn constants(loader: &str) -> Result<Constants> {
    let value = |name: &str| -> Result<i64> {
        let re = Regex::new(&format!(r"(?m)^#define\s+{name}\s+(\S+)"))?;
        let raw = re
            .captures(loader)
            .with_context(|| format!("test_loader.c defines no {name}"))?[1]
            .trim_end_matches(['l', 'L', 'u', 'U'])
            .to_owned();
        let parsed = match raw.strip_prefix("0x") {
            Some(hex) => i64::from_str_radix(hex, 16),
            None => raw.parse(),
        };
        parsed.with_context(|| format!("test_loader.c's {name} is `{raw}`"))
    };
    Ok(Constants {
        pointer_value: value("POINTER_VALUE")? as i32,
        test_data_len: value("TEST_DATA_LEN")? as u32,
        log_buf_size: value("TEST_LOADER_LOG_BUF_SZ")? as u32,
    })
}

/// The helper names of `__BPF_FUNC_MAPPER`, by id (`bpf_map_lookup_elem` at 1).
fn helpers(uapi: &str) -> Vec<String> {
    let re = Regex::new(r"\bFN\((\w+),\s*(\d+)\s*,").expect("valid regex");
    let mut by_id: BTreeMap<usize, String> = BTreeMap::new();
    for c in re.captures_iter(uapi) {
        if let Ok(id) = c[2].parse() {
            by_id.insert(id, format!("bpf_{}", &c[1]));
        }
    }
    let len = by_id.keys().next_back().map_or(0, |m| m + 1);
    (0..len)
        .map(|i| by_id.get(&i).cloned().unwrap_or_default())
        .collect()
}

/// What the test modules define: their kfuncs, struct_ops, tracepoints and functions.
fn testmod(st: &Path) -> Result<BTreeSet<String>> {
    let patterns = [
        r"BTF_ID_FLAGS\(func,\s*(\w+)",
        r#"\.name\s*=\s*"(bpf_test\w+)""#,
        r"\b(bpf_testmod\w*)",
    ]
    .map(|p| Regex::new(p).expect("valid regex"));
    let mut names = BTreeSet::new();
    for dir in ["bpf_testmod", "test_kmods"] {
        for entry in fs::read_dir(st.join(dir)).into_iter().flatten() {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "c" && e != "h") {
                continue;
            }
            let text = fs::read_to_string(&path)?;
            for re in &patterns {
                names.extend(re.captures_iter(&text).map(|c| c[1].to_owned()));
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_trees_definitions() {
        let misc = "#define __test_tag(tag) __attribute__((btf_decl_tag(\"comment:\" XSTR(__COUNTER__) \":\" tag)))\n\
                    #define __msg(msg)\t\t__test_tag(\"test_expect_msg=\" msg)\n\
                    #define __success\t\t__attribute__((btf_decl_tag(\"comment:test_expect_success\")))\n\
                    #define __naked __attribute__((naked))\n";
        assert_eq!(annotation_macros(misc), ["__msg", "__success"]);
        let loader = "#define TEST_LOADER_LOG_BUF_SZ 2097152\n#define POINTER_VALUE\t0xcafe4all\n#define TEST_DATA_LEN\t64\n";
        assert_eq!(
            constants(loader).unwrap(),
            Constants {
                pointer_value: 0xcafe4a,
                test_data_len: 64,
                log_buf_size: 2097152
            }
        );
        let uapi = "\tFN(unspec, 0, ##ctx)\t\t\t\\\n\tFN(map_lookup_elem, 1, ##ctx)\t\t\\\n\tFN(ktime_get_ns, 5, ##ctx)\t\\\n";
        let h = helpers(uapi);
        assert_eq!(
            (h.len(), h[1].as_str(), h[2].as_str()),
            (6, "bpf_map_lookup_elem", "")
        );
        let make = "progs/dynptr_fail.c-CFLAGS := -fno-strict-aliasing\n";
        assert_eq!(file_cflags(make)["dynptr_fail"], ["-fno-strict-aliasing"]);
    }
}
