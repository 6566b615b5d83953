//! The kernels the suite runs on (`kernels/kernels.toml`, one column each), and the cache where
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
pub struct KernelList {
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

/// One kernel of kernels.toml: a column.
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

impl KernelList {
    /// Reads `kernels/kernels.toml` (or `$BPFCONF_KERNELS`).
    pub fn load() -> Result<Self> {
        Self::load_from(&toml_path())
    }

    /// Reads the kernels file at `path`.
    pub fn load_from(path: &Path) -> Result<Self> {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
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

/// `kernels/kernels.toml`, or `$BPFCONF_KERNELS` (a kernels file of your own).
pub fn toml_path() -> PathBuf {
    std::env::var_os("BPFCONF_KERNELS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::paths::workspace_root().join("kernels/kernels.toml"))
}

/// `$BPFCONF_CACHE`, or `kernels/cache` in the workspace.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("BPFCONF_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::paths::workspace_root().join("kernels/cache"))
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
    path.strip_prefix(crate::paths::workspace_root())
        .map(Path::to_owned)
        .unwrap_or_else(|_| path.to_owned())
}

/// A pin that moves to a newer package (`bpfconf kernels update`).
#[derive(Clone, Debug, PartialEq)]
pub struct Repin {
    /// The kernel's id.
    pub kernel: String,
    /// Which of its `[[kernel.package]]` entries.
    pub index: usize,
    /// The new package's name, version and sha256.
    pub name: String,
    /// See [`Repin::name`].
    pub version: String,
    /// See [`Repin::name`].
    pub sha256: String,
    /// `<kernel>: <old name> <old version> → <name> <version>`.
    pub line: String,
}

impl KernelList {
    /// The newest package the mirror serves for every Debian pin (the `track` regex, else the
    /// same package name): one [`Repin`] per pin that moves.
    pub fn repins(&self, apt: &apt::Apt) -> Result<Vec<Repin>> {
        let mut repins = Vec::new();
        for kernel in self.kernel.iter().filter(|k| k.kind == Kind::Debian) {
            for (index, package) in kernel.packages.iter().enumerate() {
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
                    repins.push(Repin {
                        line: format!(
                            "{}: {} {} → {name} {version}",
                            kernel.id, package.name, package.version
                        ),
                        kernel: kernel.id.clone(),
                        index,
                        name,
                        version,
                        sha256,
                    });
                }
            }
        }
        Ok(repins)
    }
}

/// `text` (a kernels.toml) with `repins` written into their `[[kernel.package]]` entries and
/// nothing else changed: comments, order and formatting stay.
pub fn apply_repins(text: &str, repins: &[Repin]) -> Result<String> {
    let mut doc: toml_edit::DocumentMut = text.parse().context("parsing kernels.toml")?;
    let kernels = doc["kernel"]
        .as_array_of_tables_mut()
        .context("kernels.toml has no [[kernel]]")?;
    for r in repins {
        let kernel = (kernels.iter_mut())
            .find(|k| k.get("id").and_then(|id| id.as_str()) == Some(&r.kernel))
            .with_context(|| format!("kernels.toml has no kernel {}", r.kernel))?;
        let package = kernel
            .get_mut("package")
            .and_then(|p| p.as_array_of_tables_mut())
            .and_then(|p| p.get_mut(r.index))
            .with_context(|| format!("kernel {}: no package {}", r.kernel, r.index))?;
        for (key, value) in [
            ("name", &r.name),
            ("version", &r.version),
            ("sha256", &r.sha256),
        ] {
            let item = package
                .get_mut(key)
                .and_then(|i| i.as_value_mut())
                .with_context(|| format!("kernel {}: a package without {key}", r.kernel))?;
            let decor = item.decor().clone();
            *item = value.as_str().into();
            *item.decor_mut() = decor;
        }
    }
    Ok(doc.to_string())
}

/// `bpfconf kernels list`: one line per kernel with its pins and cache state.
pub fn list(kernels: &KernelList) -> String {
    let mut out = String::new();
    let width = kernels.kernel.iter().map(|k| k.id.len()).max().unwrap_or(0);
    for k in &kernels.kernel {
        let state = match k.kind {
            Kind::Host => format!("the running kernel ({})", record::kernel_release()),
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

/// One CI job per kernel (`bpfconf kernels list --json`).
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

/// Every kernel as a job of GitHub Actions' `strategy.matrix` (`fromJSON` of
/// `{"include":[{"kernel":"6.1",…},…]}`), in file order.
pub fn ci_jobs(kernels: &KernelList) -> Result<serde_json::Value> {
    use sha2::{Digest, Sha256};
    let include = kernels
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

    const KERNELS: &str = r#"
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

    fn parse(text: &str) -> KernelList {
        toml::from_str(text).unwrap()
    }

    fn key(m: &serde_json::Value, i: usize) -> &str {
        m["include"][i]["cache_key"].as_str().unwrap()
    }

    #[test]
    fn ci_jobs_have_one_job_per_kernel_in_file_order() {
        let m = ci_jobs(&parse(KERNELS)).unwrap();
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
        let base = key(&ci_jobs(&parse(KERNELS)).unwrap(), 1).to_owned();
        let repinned = KERNELS.replace("7b5597492a0a", "0000000000aa");
        assert_ne!(key(&ci_jobs(&parse(&repinned)).unwrap(), 1), base);
        let bumped = KERNELS.replace("6.1.176-1", "6.1.177-1");
        assert_ne!(key(&ci_jobs(&parse(&bumped)).unwrap(), 1), base);
        // A known bug changes what runs, not what is cached.
        let with_bug = KERNELS.replace(
            "[[kernel]]\nid = \"mine\"",
            "[[kernel.known_bug]]\ncase = \"a::b\"\nrelease = '.'\nreason = \"r\"\n\n[[kernel]]\nid = \"mine\"",
        );
        assert_eq!(parse(&with_bug).kernel[1].known_bugs.len(), 1);
        assert_eq!(key(&ci_jobs(&parse(&with_bug)).unwrap(), 1), base);
    }

    #[test]
    fn checked_in_kernel_ids_can_name_ci_jobs_and_artifacts() {
        // The workflow uploads each column as artifact `run-<id>` and keys its cache by the id.
        let kernels =
            KernelList::load_from(&crate::paths::workspace_root().join("kernels/kernels.toml"))
                .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for k in &kernels.kernel {
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
        let hosts = kernels
            .kernel
            .iter()
            .filter(|k| k.kind == Kind::Host)
            .count();
        assert!(
            hosts <= 1,
            "{hosts} host columns: the running kernel is one column"
        );
    }

    /// An update of a pin rewrites its three values and nothing else: the file's comments,
    /// blank lines, order and quoting stay.
    #[test]
    fn repins_keep_comments_and_formatting() {
        let text = format!("# The kernels.\n#   kept as written\n{KERNELS}\n# a trailing note\n")
            .replace(
                "version = \"6.1.176-1\"",
                "version = \"6.1.176-1\"   # pinned 2026-11-30",
            )
            .replace("kind = \"local\"", "kind = 'local' # literal quotes");
        let repin = Repin {
            kernel: "6.1".into(),
            index: 0,
            name: "linux-image-6.1.0-51-amd64".into(),
            version: "6.1.177-1".into(),
            sha256: "00".repeat(32),
            line: String::new(),
        };
        let updated = apply_repins(&text, &[repin]).unwrap();
        let want = text
            .replace("linux-image-6.1.0-50-amd64", "linux-image-6.1.0-51-amd64")
            .replace("6.1.176-1", "6.1.177-1")
            .replace(
                "7b5597492a0a65aee61985a492e6bcc3f2cde830072a0e3b3d8c7e1b90279bd3",
                &"00".repeat(32),
            );
        assert_eq!(updated, want);
        assert_eq!(parse(&updated).kernel[1].packages[0].version, "6.1.177-1");
        assert_eq!(apply_repins(&text, &[]).unwrap(), text);
    }
}
