//! A case's outcome and the error type case bodies return.

use std::fmt;

pub use record::{Cause, Outcome};

/// Why a case body stopped early. `?` on any error makes it a `fail`; [`OrError::or_error`] marks
/// the harness's own failures (topology set-up, a missing tool); a missing kernel feature is what
/// [`crate::floors::missing`] decides (`Unsupported`, or `Fail`/`Error` past the feature's floor).
#[derive(Debug)]
pub enum CaseError {
    /// The behaviour is wrong (or the program did not load where it should).
    Fail(anyhow::Error),
    /// The kernel lacks something; the reason names it and the probe that proved it, the cause
    /// (when the floors judged it) the feature and what the kernel said.
    Unsupported {
        reason: String,
        cause: Option<Cause>,
    },
    /// The harness could not run the case.
    Error(anyhow::Error),
}

impl CaseError {
    /// `Unsupported` with its reason. Only [`crate::floors`] should build one (its tests list the
    /// exceptions): every other path asks `floors::missing`.
    pub fn unsupported(reason: impl Into<String>) -> Self {
        CaseError::Unsupported {
            reason: reason.into(),
            cause: None,
        }
    }

    /// The outcome this error stands for.
    pub fn outcome(&self) -> Outcome {
        match self {
            CaseError::Fail(_) => Outcome::Fail,
            CaseError::Unsupported { .. } => Outcome::Unsupported,
            CaseError::Error(_) => Outcome::Error,
        }
    }

    /// The reason recorded with the outcome.
    pub fn reason(&self) -> String {
        match self {
            CaseError::Fail(e) | CaseError::Error(e) => format!("{e:#}"),
            CaseError::Unsupported { reason, .. } => reason.clone(),
        }
    }

    /// The missing feature the floors judged this outcome on, if they did.
    pub fn cause(&self) -> Option<Cause> {
        match self {
            CaseError::Unsupported { cause, .. } => cause.clone(),
            CaseError::Fail(e) | CaseError::Error(e) => e
                .chain()
                .find_map(|e| e.downcast_ref::<Regression>())
                .map(|r| r.cause.clone()),
        }
    }
}

/// A `fail` the floors decided: the kernel lacks a feature past its floor with its options on.
#[derive(Debug)]
pub struct Regression {
    pub(crate) text: String,
    /// The feature and what the kernel said.
    pub cause: Cause,
}

impl fmt::Display for Regression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::error::Error for Regression {}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for CaseError {
    fn from(e: E) -> Self {
        CaseError::Fail(e.into())
    }
}

/// Result of a case body.
pub type CaseResult<T = ()> = Result<T, CaseError>;

/// Marks an error as the harness's own (`error` outcome), not the kernel's (`fail`).
pub trait OrError<T> {
    /// Maps the error to [`CaseError::Error`] with `what` as context.
    fn or_error(self, what: &str) -> CaseResult<T>;
}

impl<T, E: Into<anyhow::Error>> OrError<T> for Result<T, E> {
    fn or_error(self, what: &str) -> CaseResult<T> {
        self.map_err(|e| CaseError::Error(e.into().context(what.to_owned())))
    }
}
