//! The result records themselves: many processes and threads writing at once into one results
//! directory (9p inside the VMs, where file locks do not work) lose and tear nothing.

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};
use testkit::Case;
use testkit::outcome::{OrError, Outcome};
use testkit::results::{self, Record};

const PROCESSES: usize = 4;
const THREADS: usize = 2;
const PER_THREAD: usize = 25;

#[test]
fn concurrent_writers_lose_and_tear_nothing() {
    Case::run_named("-", |case| {
        // Beside the real results, on the same filesystem.
        let parent = results::results_dir();
        std::fs::create_dir_all(&parent).or_error("creating the results directory")?;
        let dir = tempfile::tempdir_in(&parent).or_error("creating a scratch directory")?;
        let mut children = Vec::new();
        for p in 0..PROCESSES {
            // SAFETY: the child only spawns threads that write files, then leaves with _exit.
            match unsafe { fork() }.or_error("fork")? {
                ForkResult::Child => {
                    testkit::child::close_inherited(&[]);
                    let ok = write_records(dir.path(), p);
                    // SAFETY: ends the child without running the parent's exit handlers.
                    unsafe { libc::_exit(if ok { 0 } else { 1 }) }
                }
                ForkResult::Parent { child } => children.push(child),
            }
        }
        for child in children {
            let status = waitpid(child, None).or_error("waiting for a writer")?;
            assert_eq!(status, WaitStatus::Exited(child, 0), "writer process");
        }
        let (records, unreadable) = results::read_dir(dir.path()).or_error("reading back")?;
        let count = PROCESSES * THREADS * PER_THREAD;
        case.detail("records", count);
        assert!(unreadable.is_empty(), "torn records: {unreadable:?}");
        assert_eq!(records.len(), count, "records read back");
        Ok(())
    });
}

/// `THREADS` threads of process `p`, each writing `PER_THREAD` records with distinct case ids and a
/// reason long enough to span several writes if it were written piecewise.
fn write_records(dir: &std::path::Path, p: usize) -> bool {
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    (0..PER_THREAD).all(|i| {
                        let reason = format!("{p}.{t}.{i} ").repeat(200);
                        let r = Record::runner(
                            "stress",
                            &format!("records::p{p}_t{t}_{i}"),
                            Outcome::Pass,
                            Some(reason),
                        );
                        results::write(dir, &r).is_ok()
                    })
                })
            })
            .collect();
        threads.into_iter().all(|t| t.join().unwrap_or(false))
    })
}
