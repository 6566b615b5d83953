//! The suite's test binaries and the tests each must run (`bpfconf-tests.json` in cargo's target
//! directory), built and written on the host before any column runs: what a column must hold.

use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cargo_metadata::Message;
use serde::{Deserialize, Serialize};

use crate::paths;

/// The suite's test binaries and the tests each must run (`target/bpfconf-tests.json`), written
/// on the host before any column runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// In run order.
    pub binaries: Vec<Binary>,
}

/// One test binary.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Binary {
    /// Its name without cargo's hash (`xdp`): the record's `binary`.
    pub name: String,
    /// Where cargo built it.
    pub path: PathBuf,
    /// libtest's names of its tests (`--list`).
    pub tests: Vec<String>,
}

impl Manifest {
    /// `<target dir>/bpfconf-tests.json`.
    pub fn path() -> PathBuf {
        paths::target_dir().join("bpfconf-tests.json")
    }

    /// Builds the suite's test binaries (`cargo test --tests --no-run` of the root package),
    /// lists their tests and writes the manifest ([`Manifest::path`]).
    pub fn build() -> Result<Self> {
        let manifest = Manifest::build_in(&paths::target_dir(), &[])?;
        manifest.save()?;
        Ok(manifest)
    }

    /// Builds and lists the test binaries as [`Manifest::build`] does, into cargo's target
    /// directory `target` with the extra environment `env` (the planted bugs' build); writes
    /// nothing else.
    pub fn build_in(target: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let mut cmd = duct::cmd!(
            "cargo",
            "test",
            "-p",
            "bpf-conformance",
            "--tests",
            "--no-run",
            "--message-format=json-render-diagnostics"
        )
        .dir(paths::workspace_root())
        .env("CARGO_TARGET_DIR", target)
        .stdout_capture();
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        let out = cmd
            .run()
            .context("building the test binaries (cargo test --no-run)")?;
        let mut bins = Vec::new();
        for message in Message::parse_stream(BufReader::new(&out.stdout[..])) {
            if let Message::CompilerArtifact(artifact) = message?
                && artifact.profile.test
                && let Some(exe) = artifact.executable
            {
                bins.push(exe.into_std_path_buf());
            }
        }
        bins.sort();
        bins.dedup();
        Manifest::list(&bins)
    }

    /// Lists the tests of each binary (`<binary> --list --format terse`).
    pub fn list(paths: &[PathBuf]) -> Result<Self> {
        let mut binaries = Vec::new();
        for path in paths {
            let out = duct::cmd!(path, "--list", "--format", "terse")
                .read()
                .with_context(|| format!("listing the tests of {}", path.display()))?;
            let file = path.file_name().unwrap_or_default().to_string_lossy();
            binaries.push(Binary {
                name: file.rsplit_once('-').map_or(&*file, |(n, _)| n).to_owned(),
                path: path.clone(),
                tests: out
                    .lines()
                    .filter_map(|l| l.strip_suffix(": test"))
                    .map(str::to_owned)
                    .collect(),
            });
        }
        Ok(Manifest { binaries })
    }

    /// Reads the manifest at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let text = fs::read_to_string(path).with_context(|| {
            format!(
                "reading {}: run `bpfconf tests` on the host first",
                path.display()
            )
        })?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes [`Manifest::path`].
    pub fn save(&self) -> Result<()> {
        self.save_to(&Self::path())
    }

    /// Writes the manifest to `path`.
    pub fn save_to(&self, path: &Path) -> Result<()> {
        fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Every test, as (binary, test).
    pub fn tests(&self) -> impl Iterator<Item = (&str, &str)> {
        self.binaries
            .iter()
            .flat_map(|b| b.tests.iter().map(|t| (b.name.as_str(), t.as_str())))
    }
}
