//! The kernel matrix (`kernels/kernels.toml`): which kernels the suite runs on, and the cache where
//! their fetched packages, vmlinuz and initramfs live (`kernels/cache/`, or `$BPFCONF_CACHE`).

pub mod apt;
pub mod fetch;
pub mod initramfs;
pub mod source;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// `kernels/kernels.toml`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Matrix {
    /// One entry per column.
    pub kernel: Vec<KernelSpec>,
    /// The kernel source trees whose BPF selftests every column runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selftests: Vec<SelftestsTree>,
}

/// A kernel source tree whose BPF selftests (`tools/testing/selftests/bpf/progs`) every column
/// runs (`bpfconf selftests`).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SelftestsTree {
    /// The tree's id (`6.12`): its records are `selftests_6_12::…`.
    pub tree: String,
    /// The kernels it belongs to: there its expectations must hold.
    pub kernels: Vec<String>,
    /// The kernel whose BTF makes its `vmlinux.h`.
    pub btf: String,
    /// A kind = "source" kernel whose `linux-source` pin it reuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Debian suite of its own package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// Its own pinned `linux-source` package (when it reuses no kernel's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<Package>,
    /// The tree Makefile's BPF compile flags (`BPF_CFLAGS`, its build rule's), without include
    /// directories and `-Werror`.
    pub cflags: Vec<String>,
    /// Include directories relative to the tree (besides the generated headers and the
    /// selftests directory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
}

/// How a kernel is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The running kernel: no VM.
    Host,
    /// Pinned Debian packages.
    Debian,
    /// A user's own vmlinuz (+ modules directory).
    Local,
    /// Built from a pinned Debian `linux-source-*` package and a config fragment.
    Source,
}

/// One kernel of the matrix.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct KernelSpec {
    /// Column id (`6.1`); `host` for the running kernel.
    pub id: String,
    /// How it is obtained.
    pub kind: Kind,
    /// Debian suite to download from (`bookworm`, `trixie-backports`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suite: Option<String>,
    /// Pinned packages (kind = debian).
    #[serde(default, rename = "package", skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<Package>,
    /// kind = local: the kernel image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmlinuz: Option<PathBuf>,
    /// kind = local: its `lib/modules/<release>` directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modules: Option<PathBuf>,
    /// kind = source: the config fragment, relative to `kernels/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    /// kind = source: the make target of the base config (`tinyconfig` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    /// `false`: the column runs with the JIT off (`net.core.bpf_jit_enable=0` on the kernel
    /// command line), the interpreter twin of a column with the same kernel.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub jit: bool,
    /// Cases this kernel cannot run because they hang or crash it: recorded `unsupported` with
    /// the reason, never run (`bpfconf matrix --known-bugs` runs just these).
    #[serde(default, rename = "known_bug", skip_serializing_if = "Vec::is_empty")]
    pub known_bugs: Vec<KnownBug>,
    /// Kernel log lines that are not a failure on this kernel.
    #[serde(
        default,
        rename = "allowed_splat",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub allowed_splats: Vec<AllowedSplat>,
}

fn yes() -> bool {
    true
}

fn is_yes(v: &bool) -> bool {
    *v
}

/// A case that a kernel's own bug keeps from running.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct KnownBug {
    /// Case id (`sk_skb::passes_redirects_and_drops_by_kind`).
    pub case: String,
    /// A regex on `uname -r` of the builds that have the bug (a rebuilt kernel is run again).
    pub release: String,
    /// What happens and the evidence.
    pub reason: String,
}

/// A kernel log line that is known and harmless on this kernel (`bpfconf suite` otherwise turns a
/// `WARNING:`, `BUG:`, Oops… into an `error` record).
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct AllowedSplat {
    /// A regex on the kernel log line.
    pub pattern: String,
    /// Why it is harmless.
    pub reason: String,
}

impl KernelSpec {
    /// The known bugs of the build whose `uname -r` is `release`, as case id → reason.
    pub fn known_bugs_for(&self, release: &str) -> Result<BTreeMap<String, String>> {
        let mut bugs = BTreeMap::new();
        for bug in &self.known_bugs {
            let re = regex::Regex::new(&bug.release)
                .with_context(|| format!("kernel {}: known_bug release regex", self.id))?;
            if re.is_match(release) {
                bugs.insert(bug.case.clone(), bug.reason.clone());
            }
        }
        Ok(bugs)
    }
}

/// A pinned Debian package.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct Package {
    /// Package name, e.g. `linux-image-6.1.0-50-amd64`.
    pub name: String,
    /// Exact version.
    pub version: String,
    /// sha256 of the `.deb`.
    pub sha256: String,
    /// `kernels update` moves to the newest package whose name matches this regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
}

impl Matrix {
    /// Reads `kernels/kernels.toml` (or `$BPFCONF_KERNELS`).
    pub fn load() -> Result<Self> {
        Self::load_from(&toml_path())
    }

    /// Reads the matrix file at `path`.
    pub fn load_from(path: &Path) -> Result<Self> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes it back (after `kernels update`), keeping the header comment.
    pub fn save(&self) -> Result<()> {
        let path = toml_path();
        let old = fs::read_to_string(&path).unwrap_or_default();
        let header: String = old
            .lines()
            .take_while(|l| l.starts_with('#') || l.is_empty())
            .map(|l| format!("{l}\n"))
            .collect();
        let body = toml::to_string_pretty(self).context("serialising kernels.toml")?;
        fs::write(&path, format!("{header}{body}"))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The entry of column `id` (`host-…` columns are the `host` entry).
    pub fn spec(&self, id: &str) -> Option<&KernelSpec> {
        self.kernel
            .iter()
            .find(|k| k.id == id || (k.kind == Kind::Host && id.starts_with("host")))
    }

    /// The kernels that run in VMs (not the host), in file order.
    pub fn vm_kernels(&self) -> impl Iterator<Item = &KernelSpec> {
        self.kernel.iter().filter(|k| k.kind != Kind::Host)
    }

    /// The kernels named by `ids` (all VM kernels when empty); an unknown id lists the known ones.
    pub fn select(&self, ids: &[String]) -> Result<Vec<KernelSpec>> {
        if ids.is_empty() {
            return Ok(self.vm_kernels().cloned().collect());
        }
        ids.iter()
            .map(|id| match self.kernel.iter().find(|k| &k.id == id) {
                Some(k) if k.kind == Kind::Host => {
                    bail!("kernel `host` is the running kernel: run `cargo test` for it")
                }
                Some(k) => Ok(k.clone()),
                None => bail!(
                    "unknown kernel id `{id}`; kernels/kernels.toml knows: {}",
                    self.kernel
                        .iter()
                        .map(|k| k.id.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
            .collect()
    }
}

/// `kernels/kernels.toml`, or `$BPFCONF_KERNELS` (a matrix of your own).
pub fn toml_path() -> PathBuf {
    std::env::var_os("BPFCONF_KERNELS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("kernels/kernels.toml"))
}

/// `$BPFCONF_CACHE`, or `kernels/cache` in the workspace.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("BPFCONF_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("kernels/cache"))
}

/// Where one kernel's artefacts live.
pub fn kernel_dir(id: &str) -> PathBuf {
    cache_dir().join(id)
}

/// A kernel ready to boot: its image and the initramfs that loads its modules.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The kernel image.
    pub vmlinuz: PathBuf,
    /// The initramfs (cpio).
    pub initramfs: PathBuf,
    /// `uname -r` of the kernel.
    pub release: String,
}

impl Prepared {
    /// What `fetch` left in the cache for `id`, if it is complete.
    pub fn cached(id: &str) -> Option<Self> {
        let dir = kernel_dir(id);
        let release = fs::read_to_string(dir.join("ready"))
            .ok()?
            .trim()
            .to_owned();
        let p = Prepared {
            vmlinuz: dir.join("vmlinuz"),
            initramfs: dir.join("initramfs.cpio"),
            release,
        };
        (p.vmlinuz.exists() && p.initramfs.exists()).then_some(p)
    }
}

/// Relative path of `path` under the workspace root (for the checked-in vmtest.toml), else as is.
pub fn relative_to_root(path: &Path) -> PathBuf {
    path.strip_prefix(crate::workspace_root())
        .map(Path::to_owned)
        .unwrap_or_else(|_| path.to_owned())
}

impl Matrix {
    /// Moves every Debian pin to the newest package the mirror serves (the `track` regex, else the
    /// same package name); returns one line per change.
    pub fn update_pins(&mut self, apt: &apt::Apt) -> Result<Vec<String>> {
        let mut changes = Vec::new();
        for kernel in self.kernel.iter_mut().filter(|k| k.kind == Kind::Debian) {
            for package in &mut kernel.packages {
                let pattern = package
                    .track
                    .clone()
                    .unwrap_or_else(|| format!("^{}$", regex::escape(&package.name)));
                let newest = apt.newest(&pattern)?;
                let Some((name, version, sha256)) = newest.into_iter().next() else {
                    bail!(
                        "kernel {}: the mirror has no package matching `{pattern}`",
                        kernel.id
                    );
                };
                if (&name, &version) != (&package.name, &package.version) {
                    changes.push(format!(
                        "{}: {} {} → {name} {version}",
                        kernel.id, package.name, package.version
                    ));
                    (package.name, package.version, package.sha256) = (name, version, sha256);
                }
            }
        }
        if changes.is_empty() {
            changes.push("every pin is the newest the mirror serves".into());
        }
        Ok(changes)
    }
}

/// `bpfconf kernels list`: one line per kernel with its pins and cache state.
pub fn list(matrix: &Matrix) -> String {
    let mut out = String::new();
    let width = matrix.kernel.iter().map(|k| k.id.len()).max().unwrap_or(0);
    for k in &matrix.kernel {
        let state = match k.kind {
            Kind::Host => format!("the running kernel ({})", bpfconf_record::kernel_release()),
            _ => match Prepared::cached(&k.id) {
                Some(p) => format!("cached: {} ({})", p.release, kernel_dir(&k.id).display()),
                None => "not fetched".into(),
            },
        };
        out.push_str(&format!(
            "{:<width$} {:<7} {state}\n",
            k.id,
            format!("{:?}", k.kind).to_lowercase()
        ));
        for p in &k.packages {
            out.push_str(&format!(
                "         {} {} sha256:{}…\n",
                p.name,
                p.version,
                &p.sha256[..12.min(p.sha256.len())]
            ));
        }
        if let Some(v) = &k.vmlinuz {
            out.push_str(&format!("         vmlinuz {}\n", v.display()));
        }
    }
    out
}

/// One CI job of the matrix (`bpfconf kernels list --json`).
#[derive(Debug, PartialEq, Serialize)]
pub struct CiColumn {
    /// Column id (`host`, `6.1`).
    pub kernel: String,
    /// How it is obtained.
    pub kind: Kind,
    /// Whether the column runs in a VM (every kind but the host).
    pub vm: bool,
    /// A hash of what the kernel's cached artefacts are made from ([`fetch::pins`]): a CI cache
    /// keyed by it is reused exactly as long as `kernels fetch` would reuse the local cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
}

/// Every kernel of the matrix as a GitHub Actions `strategy.matrix` (`fromJSON` of
/// `{"include":[{"kernel":"6.1",…},…]}`), in file order.
pub fn ci_matrix(matrix: &Matrix) -> Result<serde_json::Value> {
    use sha2::{Digest, Sha256};
    let include = matrix
        .kernel
        .iter()
        .map(|k| {
            let vm = k.kind != Kind::Host;
            let cache_key = if vm {
                Some(format!("{:x}", Sha256::digest(fetch::pins(k)?))[..16].to_owned())
            } else {
                None
            };
            Ok(CiColumn {
                kernel: k.id.clone(),
                kind: k.kind,
                vm,
                cache_key,
            })
        })
        .collect::<Result<Vec<CiColumn>>>()?;
    Ok(serde_json::json!({ "include": include }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATRIX: &str = r#"
[[kernel]]
id = "host"
kind = "host"

[[kernel]]
id = "6.1"
kind = "debian"
suite = "bookworm"

[[kernel.package]]
name = "linux-image-6.1.0-50-amd64"
version = "6.1.176-1"
sha256 = "7b5597492a0a65aee61985a492e6bcc3f2cde830072a0e3b3d8c7e1b90279bd3"

[[kernel]]
id = "mine"
kind = "local"
vmlinuz = "/boot/bzImage"
"#;

    fn parse(text: &str) -> Matrix {
        toml::from_str(text).unwrap()
    }

    fn key(m: &serde_json::Value, i: usize) -> &str {
        m["include"][i]["cache_key"].as_str().unwrap()
    }

    #[test]
    fn ci_matrix_has_one_job_per_kernel_in_file_order() {
        let m = ci_matrix(&parse(MATRIX)).unwrap();
        let key_61 = key(&m, 1).to_owned();
        let key_mine = key(&m, 2).to_owned();
        assert_eq!(
            m,
            serde_json::json!({"include": [
                {"kernel": "host", "kind": "host", "vm": false},
                {"kernel": "6.1", "kind": "debian", "vm": true, "cache_key": key_61},
                {"kernel": "mine", "kind": "local", "vm": true, "cache_key": key_mine},
            ]})
        );
        for k in [&key_61, &key_mine] {
            assert_eq!(k.len(), 16);
            assert!(k.chars().all(|c| c.is_ascii_hexdigit()), "{k}");
        }
        assert_ne!(key_61, key_mine);
    }

    #[test]
    fn cache_key_changes_with_the_pins_only() {
        let base = key(&ci_matrix(&parse(MATRIX)).unwrap(), 1).to_owned();
        let repinned = MATRIX.replace("7b5597492a0a", "0000000000aa");
        assert_ne!(key(&ci_matrix(&parse(&repinned)).unwrap(), 1), base);
        let bumped = MATRIX.replace("6.1.176-1", "6.1.177-1");
        assert_ne!(key(&ci_matrix(&parse(&bumped)).unwrap(), 1), base);
        // A known bug changes what runs, not what is cached.
        let with_bug = MATRIX.replace(
            "[[kernel]]\nid = \"mine\"",
            "[[kernel.known_bug]]\ncase = \"a::b\"\nrelease = '.'\nreason = \"r\"\n\n[[kernel]]\nid = \"mine\"",
        );
        assert_eq!(parse(&with_bug).kernel[1].known_bugs.len(), 1);
        assert_eq!(key(&ci_matrix(&parse(&with_bug)).unwrap(), 1), base);
    }

    #[test]
    fn checked_in_kernel_ids_can_name_ci_jobs_and_artifacts() {
        // The workflow uploads each column as artifact `run-<id>` and keys its cache by the id.
        let matrix =
            Matrix::load_from(&crate::workspace_root().join("kernels/kernels.toml")).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for k in &matrix.kernel {
            assert!(seen.insert(k.id.as_str()), "kernel id {} twice", k.id);
            assert!(
                !k.id.is_empty()
                    && k.id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                "kernel id `{}`: use letters, digits, `.`, `_` and `-` only",
                k.id
            );
        }
        let hosts = matrix
            .kernel
            .iter()
            .filter(|k| k.kind == Kind::Host)
            .count();
        assert!(
            hosts <= 1,
            "{hosts} host columns: the running kernel is one column"
        );
    }
}
