//! A private apt configuration for downloading kernel packages: its own sources list, state and
//! cache under the kernel cache. The system's apt sources are never read or changed (adding suites
//! to them once broke a machine: shared/ENVIRONMENT.md).

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

use super::{KernelSpec, Package};

/// The Debian suites kernels.toml may pin from.
const SUITES: &[&str] = &["bullseye", "bookworm", "trixie", "trixie-backports", "sid"];
const MIRROR: &str = "http://deb.debian.org/debian";
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The private apt root (`<cache>/apt`).
pub struct Apt {
    root: PathBuf,
}

impl Apt {
    /// Creates the configuration files when missing.
    pub fn new(cache: &Path) -> Result<Self> {
        let root = cache.join("apt");
        for dir in [
            "etc/sources.list.d",
            "etc/preferences.d",
            "state/lists/partial",
            "cache/archives/partial",
        ] {
            fs::create_dir_all(root.join(dir))
                .with_context(|| format!("creating {}", root.join(dir).display()))?;
        }
        let sources: String = SUITES
            .iter()
            .map(|s| format!("deb [signed-by={KEYRING}] {MIRROR} {s} main\n"))
            .collect();
        fs::write(root.join("etc/sources.list"), sources)?;
        let status = root.join("state/status");
        if !status.exists() {
            fs::write(&status, "")?;
        }
        Ok(Apt { root })
    }

    fn options(&self) -> Vec<String> {
        let r = self.root.display();
        [
            format!("Dir::Etc={r}/etc"),
            format!("Dir::Etc::SourceList={r}/etc/sources.list"),
            format!("Dir::Etc::SourceParts={r}/etc/sources.list.d"),
            format!("Dir::Etc::PreferencesParts={r}/etc/preferences.d"),
            format!("Dir::State={r}/state"),
            format!("Dir::State::status={r}/state/status"),
            format!("Dir::Cache={r}/cache"),
            "APT::Architecture=amd64".to_owned(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_owned(), o])
        .collect()
    }

    fn run(&self, tool: &str, args: &[&str], cwd: Option<&Path>) -> Result<String> {
        let mut argv = self.options();
        argv.extend(args.iter().map(|a| a.to_string()));
        let mut expr = duct::cmd(tool, &argv)
            .stdout_capture()
            .stderr_capture()
            .unchecked();
        if let Some(dir) = cwd {
            expr = expr.dir(dir);
        }
        let out = expr
            .run()
            .with_context(|| format!("running {tool}: is apt installed?"))?;
        if !out.status.success() {
            bail!(
                "`{tool} {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `apt-get update` of the private lists.
    pub fn update(&self) -> Result<()> {
        self.run("apt-get", &["-q", "update"], None).map(drop)
    }

    /// Downloads `name=version` into `dir`; `Ok(false)` when the mirror does not have it.
    pub fn download(&self, name: &str, version: &str, dir: &Path) -> Result<bool> {
        match self.run(
            "apt-get",
            &["-q", "download", &format!("{name}={version}")],
            Some(dir),
        ) {
            Ok(_) => Ok(true),
            Err(e)
                if format!("{e}").contains("Can't find a source")
                    || format!("{e}").contains("not found") =>
            {
                Ok(false)
            }
            Err(e) if format!("{e}").contains("Unable to locate package") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `(name, version, sha256)` of the newest version of every package whose name matches `pattern`
    /// (an apt-cache search regex), newest first.
    pub fn newest(&self, pattern: &str) -> Result<Vec<(String, String, String)>> {
        let names = self.run("apt-cache", &["search", "--names-only", pattern], None)?;
        let mut found = Vec::new();
        for name in names.lines().filter_map(|l| l.split_whitespace().next()) {
            let show = self.run("apt-cache", &["show", name], None)?;
            // apt-cache show lists the candidate first.
            let field = |f: &str| {
                show.lines()
                    .find_map(|l| l.strip_prefix(f))
                    .map(|v| v.trim().to_owned())
            };
            if let (Some(version), Some(sha)) = (field("Version:"), field("SHA256:")) {
                found.push((name.to_owned(), version, sha));
            }
        }
        found.sort_by(|a, b| version_cmp(&b.0, &a.0));
        Ok(found)
    }

    /// Downloads the pinned `package` of `spec` into `debs/<name>.deb` unless a file with the
    /// pinned hash is there; a mismatch is refused and fetched again, once. `updated` says
    /// whether the lists were updated already (a package not found updates them once).
    pub fn download_pinned(
        &self,
        spec: &KernelSpec,
        package: &Package,
        debs: &Path,
        updated: &mut bool,
        say: &dyn Fn(&str),
    ) -> Result<PathBuf> {
        let target = debs.join(format!("{}.deb", package.name));
        if target.exists() {
            if sha256(&target)? == package.sha256 {
                return Ok(target);
            }
            say(&format!(
                "{}: cached file has the wrong sha256; fetching it again",
                package.name
            ));
            fs::remove_file(&target)?;
        }
        for attempt in 0..2 {
            let tmp = tempfile::tempdir_in(debs)?;
            say(&format!("downloading {}={}", package.name, package.version));
            let mut found = self.download(&package.name, &package.version, tmp.path())?;
            if !found && !*updated {
                say("apt-get update (private lists)");
                self.update()?;
                *updated = true;
                found = self.download(&package.name, &package.version, tmp.path())?;
            }
            if !found {
                bail!(
                    "kernel {}: package {}={} is no longer on the mirror (suite {}); run `bpfconf kernels update` to pin the newest",
                    spec.id,
                    package.name,
                    package.version,
                    spec.suite.as_deref().unwrap_or("?")
                );
            }
            let file = fs::read_dir(tmp.path())?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|x| x == "deb"))
                .context("apt-get download left no .deb")?;
            let got = sha256(&file)?;
            if got == package.sha256 {
                fs::rename(&file, &target)?;
                return Ok(target);
            }
            say(&format!(
                "{}: sha256 {got} does not match the pin {}",
                package.name, package.sha256
            ));
            if attempt == 1 {
                bail!(
                    "kernel {}: {}={} has sha256 {got}, but kernels.toml pins {}; refusing it (if Debian rebuilt it, run `bpfconf kernels update`)",
                    spec.id,
                    package.name,
                    package.version,
                    package.sha256
                );
            }
        }
        unreachable!("the loop returns or bails")
    }
}

/// The sha256 of a file, hex.
pub fn sha256(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Orders package names by the numbers in them (`7.3.10` after `7.3.4`).
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let nums = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect()
    };
    nums(a).cmp(&nums(b))
}
