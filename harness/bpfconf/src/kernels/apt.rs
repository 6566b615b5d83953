//! A private apt configuration for downloading kernel packages: its own sources list, state and
//! cache under the kernel cache. The system's apt sources are never read or changed (adding suites
//! to them once broke a machine: shared/ENVIRONMENT.md).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The Debian suites the matrix may use.
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
