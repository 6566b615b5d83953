//! Compiles every `src/bpf/*.bpf.c` into a libbpf-rs skeleton with the pinned clang and `-mcpu`, plus
//! the variants in [`VARIANTS`] (the same source built with other flags), and writes `skeletons.rs`,
//! which `src/lib.rs` includes: one public module per object, named after it. With
//! `BPFCONF_MUTANTS=1` every object is built with `-DBPFCONF_MUTANT`: the samples' planted bugs
//! (`#ifdef BPFCONF_MUTANT /* … */`, judged by `bpfconf mutants`).

use std::env;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use libbpf_cargo::SkeletonBuilder;

/// The BPF compiler. Pinned: what loads where depends on it (shared/ENVIRONMENT.md).
const CLANG: &str = "clang-19";
/// The instruction set every sample is built for unless its variant says otherwise: the newest that
/// the oldest kernel of the matrix (5.10) accepts.
const MCPU: &str = "v2";

/// An extra object built from one of the sources with other flags.
struct Variant {
    /// Object and module name.
    name: &'static str,
    /// File under `src/bpf/`.
    source: &'static str,
    /// `-mcpu` for this object.
    mcpu: &'static str,
    /// Extra clang arguments.
    args: &'static [&'static str],
}

const VARIANTS: &[Variant] = &[
    // Hello World under a non-GPL license: bpf_trace_printk is GPL-only, so the kernel must refuse it.
    Variant {
        name: "hello_world_proprietary",
        source: "hello_world.bpf.c",
        mcpu: MCPU,
        args: &["-DBPFCONF_LICENSE=\"Proprietary\""],
    },
    // Instruction-set versions (tests/isa.rs): isa.bpf.c itself is built for v2.
    Variant {
        name: "isa_v1",
        source: "isa.bpf.c",
        mcpu: "v1",
        args: &[],
    },
    Variant {
        name: "isa_v3",
        source: "isa.bpf.c",
        mcpu: "v3",
        args: &[],
    },
    Variant {
        name: "isa_v4",
        source: "isa.bpf.c",
        mcpu: "v4",
        args: &[],
    },
];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let src_dir = manifest.join("src/bpf");
    println!("cargo:rerun-if-changed={}", src_dir.display());
    println!("cargo:rerun-if-env-changed=BPFCONF_MUTANTS");
    let mutants = env::var_os("BPFCONF_MUTANTS").is_some_and(|v| v == "1");

    let clang_version = clang_version();
    println!("cargo:rustc-env=BPFCONF_CLANG_VERSION={clang_version}");
    println!("cargo:rustc-env=BPFCONF_MCPU={MCPU}");

    let mut sources: Vec<PathBuf> = fs::read_dir(&src_dir)
        .expect("programs/src/bpf is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    sources.sort();

    let mut objects: Vec<(String, PathBuf, &str, Vec<String>)> = sources
        .iter()
        .map(|path| {
            let file = path
                .file_name()
                .and_then(OsStr::to_str)
                .expect("utf-8 file name");
            (
                file.trim_end_matches(".bpf.c").to_owned(),
                path.clone(),
                MCPU,
                Vec::new(),
            )
        })
        .collect();
    for v in VARIANTS {
        let args = v.args.iter().map(|a| a.to_string()).collect();
        objects.push((v.name.to_owned(), src_dir.join(v.source), v.mcpu, args));
    }

    let mut modules = String::new();
    for (name, source, mcpu, extra) in &mut objects {
        if mutants {
            extra.push("-DBPFCONF_MUTANT".to_owned());
        }
        build_skeleton(name, source, mcpu, extra, &out);
        let file = source
            .file_name()
            .and_then(OsStr::to_str)
            .expect("utf-8 file name");
        writeln!(
            modules,
            "/// Skeleton of `programs/src/bpf/{file}` (object `{name}`, `-mcpu={mcpu}`).\n\
             pub mod {name} {{ include!(concat!(env!(\"OUT_DIR\"), \"/{name}.skel.rs\")); }}"
        )
        .expect("write to string");
    }
    fs::write(out.join("skeletons.rs"), modules).expect("write skeletons.rs");
}

fn build_skeleton(name: &str, source: &Path, mcpu: &str, extra: &[String], out: &Path) {
    let mut args = vec![
        format!("-mcpu={mcpu}"),
        // Debian's multiarch headers hold <asm/types.h>, which <linux/bpf.h> includes.
        "-I/usr/include/x86_64-linux-gnu".to_owned(),
        "-Wall".to_owned(),
    ];
    args.extend_from_slice(extra);
    SkeletonBuilder::new()
        .source(source)
        .obj(out.join(format!("{name}.bpf.o")))
        .clang(CLANG)
        .clang_args(args)
        .build_and_generate(out.join(format!("{name}.skel.rs")))
        .unwrap_or_else(|e| panic!("building the skeleton of {}: {e:#}", source.display()));
}

/// `clang-19 --version`'s first line; a clear failure when clang-19 is missing.
fn clang_version() -> String {
    match Command::new(CLANG).arg("--version").output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        _ => panic!(
            "{CLANG} not found: the BPF programs are compiled with {CLANG}. \
             Install it with `apt-get install {CLANG}` (or run `ci/setup`, which installs everything)."
        ),
    }
}
