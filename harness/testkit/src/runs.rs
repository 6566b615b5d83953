//! What a tracing program recorded of events the test made, against the runs the kernel reports
//! it skipped. The kernel skips a program's run (and counts it in `recursion_misses`, 5.12+)
//! when the program is already running on that CPU: a task preempted inside it (7.x runs syscall
//! tracepoints preemptibly) makes the next run there a miss.

use std::fmt::Debug;
use std::os::fd::BorrowedFd;

use crate::outcome::{CaseError, CaseResult, OrError};
use crate::raw_load;

/// The runs of the program behind `fd` the kernel skipped.
pub fn misses(fd: BorrowedFd<'_>) -> CaseResult<u64> {
    Ok(raw_load::prog_info(fd)
        .or_error("reading the program's info")?
        .recursion_misses)
}

/// `recorded` must be `made`, in order, except that when the kernel skipped `misses` runs, up to
/// that many may be missing (the rest still in order): with no run skipped, nothing may be
/// missing. A program that recorded none of the events made never ran, which no count of skipped
/// runs excuses. `what` names the events in the failure.
pub fn all_recorded<T: PartialEq + Debug>(
    what: &str,
    made: &[T],
    recorded: &[T],
    misses: u64,
) -> CaseResult {
    let mut left = made.iter();
    let in_order = recorded.iter().all(|r| left.any(|m| m == r));
    let lost = made.len().saturating_sub(recorded.len()) as u64;
    let ran = !recorded.is_empty() || made.is_empty();
    if in_order && ran && lost <= misses {
        return Ok(());
    }
    let why = if !ran {
        "the program never recorded one"
    } else if !in_order {
        "not the events made, in their order"
    } else {
        "more missing than runs skipped"
    };
    Err(CaseError::Fail(anyhow::anyhow!(
        "{what}: made {made:?}, the program recorded {recorded:?} ({misses} runs skipped by the \
         kernel): {why}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_events_need_skipped_runs_and_order_holds() {
        // Exact.
        assert!(all_recorded("x", &[1, 2, 3], &[1, 2, 3], 0).is_ok());
        assert!(all_recorded::<u8>("x", &[], &[], 0).is_ok());
        // Missing events: excused by as many skipped runs, never without one.
        assert!(all_recorded("x", &[1, 2, 3], &[1, 3], 1).is_ok());
        assert!(all_recorded("x", &[1, 2, 3], &[3], 2).is_ok());
        assert!(all_recorded("x", &[1, 2, 3], &[1, 3], 0).is_err());
        assert!(all_recorded("x", &[1, 2, 3], &[3], 1).is_err());
        // A program that recorded nothing never ran, whatever the kernel skipped.
        assert!(all_recorded("x", &[1, 2, 3], &[], 0).is_err());
        assert!(all_recorded("x", &[1, 2, 3], &[], 3).is_err());
        assert!(all_recorded("x", &[1], &[], 100).is_err());
        // Order, duplicates and strangers.
        assert!(all_recorded("x", &[1, 2, 3], &[3, 1], 1).is_err());
        assert!(all_recorded("x", &[1, 2, 3], &[1, 2, 3, 3], 0).is_err());
        assert!(all_recorded("x", &[1, 2], &[1, 4], 5).is_err());
    }
}
