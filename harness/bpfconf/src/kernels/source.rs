//! `bpfconf kernels build`: a kernel built from a pinned Debian `linux-source-*` package and a
//! config fragment of `kernels/` (kind = "source"). `make <base>` (tinyconfig), the fragment,
//! `make olddefconfig`, then every option of the fragment must have survived (a dropped one names
//! a missing dependency), then `make bzImage`.
//!
//! Builds live in [`build_root`] (`/var/cache/bpfconf/source` when writable: it outlives a CI
//! clone) and are keyed by the package, the base and the fragment's bytes ([`key`]): an unchanged
//! kernel is never rebuilt. The object tree is per package and base, so a changed fragment
//! rebuilds only what the changed options touch.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::apt::Apt;
use super::{KernelSpec, Package, cache_dir};

/// A finished build: `<out>/bzImage`, `<out>/config`, `<out>/release`.
pub struct Built {
    /// The compressed kernel image.
    pub bzimage: PathBuf,
    /// Its `.config`.
    pub config: PathBuf,
    /// `make kernelrelease`.
    pub release: String,
}

/// Where source kernels are built: `$BPFCONF_BUILD_CACHE`, else `/var/cache/bpfconf/source`
/// when it can be created and written, else `<kernel cache>/source`.
pub fn build_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("BPFCONF_BUILD_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let system = Path::new("/var/cache/bpfconf/source");
    let writable =
        fs::create_dir_all(system).is_ok() && tempfile::NamedTempFile::new_in(system).is_ok();
    if writable {
        system.to_owned()
    } else {
        cache_dir().join("source")
    }
}

/// The build's inputs of `spec`: its one package, the base config target and the fragment.
struct Inputs<'a> {
    package: &'a Package,
    base: &'a str,
    fragment_path: PathBuf,
    fragment: String,
}

fn inputs(spec: &KernelSpec) -> Result<Inputs<'_>> {
    let [package] = spec.packages.as_slice() else {
        bail!(
            "kernel {}: kind = source needs exactly one [[kernel.package]] (linux-source-…)",
            spec.id
        );
    };
    let rel = spec.config.as_ref().with_context(|| {
        format!(
            "kernel {}: kind = source needs config = <fragment>",
            spec.id
        )
    })?;
    let fragment_path = crate::paths::workspace_root().join("kernels").join(rel);
    let fragment = fs::read_to_string(&fragment_path)
        .with_context(|| format!("reading {}", fragment_path.display()))?;
    Ok(Inputs {
        package,
        base: spec.base.as_deref().unwrap_or("tinyconfig"),
        fragment_path,
        fragment,
    })
}

/// Locks the source tree of `package` under `root` (held until dropped).
pub fn lock(root: &Path, package: &super::Package) -> Result<File> {
    fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    let lock = File::create(root.join(format!("{}.lock", package.name)))?;
    lock.lock().context("locking the source build")?;
    Ok(lock)
}

/// What makes two builds of the same inputs the same bytes (the kernel's reproducible-builds
/// variables): the version string baked into the image names no date, user or host, so the
/// image's GNU build id, which binds the column's snapshots (`build.json`), is the same on every
/// machine with the same toolchain.
const REPRODUCIBLE: [(&str, &str); 4] = [
    ("KBUILD_BUILD_TIMESTAMP", "1970-01-01 00:00:00 UTC"),
    ("KBUILD_BUILD_USER", "bpfconf"),
    ("KBUILD_BUILD_HOST", "bpfconf"),
    ("KBUILD_BUILD_VERSION", "1"),
];

/// The cache key of a build: the package pin, the base, the fragment's bytes and the
/// reproducible-build settings.
pub fn key(spec: &KernelSpec) -> Result<String> {
    let i = inputs(spec)?;
    let mut h = Sha256::new();
    let reproducible: String = REPRODUCIBLE
        .iter()
        .map(|(k, v)| format!("{k}={v};"))
        .collect();
    for part in [
        &i.package.name,
        &i.package.version,
        &i.package.sha256,
        i.base,
        &i.fragment,
        &reproducible,
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{}-{}", i.package.version, &hex[..16]))
}

/// Builds `spec` unless its key is already built; `say` reports progress.
pub fn build(spec: &KernelSpec, say: &dyn Fn(&str)) -> Result<Built> {
    let i = inputs(spec)?;
    let root = build_root();
    let _lock = lock(&root, i.package)?;

    let out = root.join("out").join(key(spec)?);
    if let Some(built) = finished(&out) {
        return Ok(built);
    }
    let tree = source_tree(spec, i.package, &root, say)?;
    let obj = root.join(format!(
        "obj-{}_{}-{}",
        i.package.name, i.package.version, i.base
    ));
    fs::create_dir_all(&obj)?;
    let log_path = root.join(format!("build-{}.log", spec.id));
    let mut log = File::create(&log_path)?;
    let make = |args: &[&str], log: &mut File, say: &dyn Fn(&str)| {
        run_make(&tree, &obj, args, log, say).map_err(|e| {
            anyhow::anyhow!(
                "kernel {}: {e:#}\n--- last lines of {} ---\n{}",
                spec.id,
                log_path.display(),
                tail(&log_path, 40)
            )
        })
    };

    say(&format!("make {}", i.base));
    make(&[i.base], &mut log, say)?;
    let mut config = fs::OpenOptions::new()
        .append(true)
        .open(obj.join(".config"))?;
    writeln!(config, "\n{}", i.fragment)?;
    drop(config);
    say("make olddefconfig");
    make(&["olddefconfig"], &mut log, say)?;
    let dropped = dropped_options(&i.fragment, &fs::read_to_string(obj.join(".config"))?);
    if !dropped.is_empty() {
        bail!(
            "kernel {}: `make olddefconfig` dropped options of {} (a dependency is missing):\n  {}",
            spec.id,
            i.fragment_path.display(),
            dropped.join("\n  ")
        );
    }
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    say(&format!(
        "make -j{jobs} bzImage (log: {})",
        log_path.display()
    ));
    make(&[&format!("-j{jobs}"), "bzImage"], &mut log, say)?;
    let release = duct::cmd!(
        "make",
        "-s",
        format!("O={}", obj.display()),
        "kernelrelease"
    )
    .dir(&tree)
    .read()
    .context("make kernelrelease")?;

    let tmp = root.join("out").join(format!(".tmp-{}", spec.id));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    fs::copy(obj.join("arch/x86/boot/bzImage"), tmp.join("bzImage"))?;
    fs::copy(obj.join(".config"), tmp.join("config"))?;
    fs::write(tmp.join("release"), release.trim())?;
    let _ = fs::remove_dir_all(&out);
    fs::rename(&tmp, &out)?;
    finished(&out).context("the build left no bzImage")
}

fn finished(out: &Path) -> Option<Built> {
    let built = Built {
        bzimage: out.join("bzImage"),
        config: out.join("config"),
        release: fs::read_to_string(out.join("release"))
            .ok()?
            .trim()
            .to_owned(),
    };
    (built.bzimage.is_file() && built.config.is_file()).then_some(built)
}

/// The extracted source tree of `package` (downloaded and hash-checked when missing) under
/// `root`, for kernel (or selftests tree) `spec`; the caller holds [`lock`].
pub fn source_tree(
    spec: &KernelSpec,
    package: &super::Package,
    root: &Path,
    say: &dyn Fn(&str),
) -> Result<PathBuf> {
    let tree = root.join(format!("tree-{}_{}", package.name, package.version));
    if tree.join("Makefile").is_file() {
        return Ok(tree);
    }
    let debs = root.join("debs");
    fs::create_dir_all(&debs)?;
    let apt = Apt::new(&cache_dir())?;
    let deb = apt.download_pinned(spec, package, &debs, &mut false, say)?;
    say("extracting the source");
    let tmp = tempfile::tempdir_in(root)?;
    duct::cmd!("dpkg-deb", "-x", &deb, tmp.path())
        .run()
        .with_context(|| format!("extracting {}", deb.display()))?;
    let tarball = fs::read_dir(tmp.path().join("usr/src"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".tar.xz"))
        .with_context(|| format!("{}: no usr/src/*.tar.xz", deb.display()))?;
    let unpacked = tmp.path().join("tree");
    fs::create_dir_all(&unpacked)?;
    duct::cmd!("tar", "-xf", &tarball, "-C", &unpacked)
        .run()
        .context("unpacking the source tarball")?;
    let top = fs::read_dir(&unpacked)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.join("Makefile").is_file())
        .context("the source tarball has no top directory with a Makefile")?;
    let _ = fs::remove_dir_all(&tree);
    fs::rename(top, &tree)?;
    Ok(tree)
}

/// `make -C tree O=obj ARGS`, its output appended to `log`; reports the line count and the
/// latest step every 100 lines.
fn run_make(
    tree: &Path,
    obj: &Path,
    args: &[&str],
    log: &mut File,
    say: &dyn Fn(&str),
) -> Result<()> {
    let mut argv = vec![format!("O={}", obj.display())];
    argv.extend(args.iter().map(|a| a.to_string()));
    let mut make = duct::cmd("make", &argv).dir(tree);
    for (var, value) in REPRODUCIBLE {
        make = make.env(var, value);
    }
    let reader = make
        .stderr_to_stdout()
        .reader()
        .context("running make (run ci/setup for the build prerequisites)")?;
    let mut lines = BufReader::new(&reader).lines();
    let mut n = 0usize;
    while let Some(line) = lines.next().transpose()? {
        writeln!(log, "{line}")?;
        n += 1;
        if n.is_multiple_of(100) {
            say(&format!(
                "make {}: {n} lines, {}",
                args.join(" "),
                line.trim()
            ));
        }
    }
    reader
        .try_wait()?
        .filter(|o| o.status.success())
        .map(drop)
        .with_context(|| format!("`make {}` failed", args.join(" ")))
}

/// The options of `fragment` whose value `config` does not have (`CONFIG_X=v`, or
/// `# CONFIG_X is not set`), as `CONFIG_X=want (got …)`.
fn dropped_options(fragment: &str, config: &str) -> Vec<String> {
    let values = |text: &str| -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|l| {
                let l = l.trim();
                if let Some((k, v)) = l.split_once('=')
                    && k.starts_with("CONFIG_")
                {
                    return Some((k.to_owned(), v.to_owned()));
                }
                let off = l.strip_prefix("# ")?.strip_suffix(" is not set")?;
                off.starts_with("CONFIG_")
                    .then(|| (off.to_owned(), "n".to_owned()))
            })
            .collect()
    };
    let have = values(config);
    values(fragment)
        .into_iter()
        .filter_map(|(k, want)| {
            let got = have.get(&k).map_or("n", String::as_str);
            (got != want).then(|| format!("{k}={want} (got {got})"))
        })
        .collect()
}

/// The last `n` lines of a file.
fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_options_names_what_olddefconfig_changed() {
        let fragment =
            "# comment\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"bpf\"\nCONFIG_D=y\n";
        let config = "CONFIG_A=y\nCONFIG_B=y\nCONFIG_C=\"bpf\"\n# CONFIG_D is not set\n";
        assert_eq!(
            dropped_options(fragment, config),
            ["CONFIG_B=n (got y)", "CONFIG_D=y (got n)"]
        );
    }
}
