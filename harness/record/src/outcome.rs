//! How a case ended.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How a case ended (shared/DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Loaded, attached, behaved as expected.
    Pass,
    /// Should work on this kernel and did not.
    Fail,
    /// The kernel lacks the program type, attach point, helper or config option.
    Unsupported,
    /// The harness itself could not run the case.
    Error,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "fail",
            Outcome::Unsupported => "unsupported",
            Outcome::Error => "error",
        })
    }
}
