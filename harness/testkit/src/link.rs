//! A BPF link held where no other process can copy it, so that closing it is the detach.
//!
//! A link detaches its program when its last reference goes, and a process forked while the
//! link's fd is open holds a reference of its own until it closes its copy ([`crate::child`]'s
//! clients close theirs right after the fork, spawned commands at exec): in a test binary whose
//! other tests fork at any time, a test's own close may leave the program attached for a while.
//! Waiting until the link's id no longer resolves does not close that gap: the kernel frees the
//! id before it detaches (`bpf_link_free`: `bpf_link_free_id`, then `ops->release`), in the task
//! that dropped the last reference.
//!
//! [`held_alone`] makes the link on a thread of its own whose descriptor table is private
//! (`unshare(CLONE_FILES)`): forks by other threads copy the process's shared table, which never
//! holds the link, so that thread's close(2) drops the last reference, and the kernel releases a
//! file before close(2) returns to user space.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::mpsc;

use nix::sched::{CloneFlags, unshare};

use crate::outcome::{CaseError, CaseResult, OrError};

/// Makes a link with `attach` on a thread whose descriptor table only it uses, runs `during` on
/// the calling thread while the link exists, then closes the link on that thread: when this
/// returns, the kernel has released the link (detached its program). An error of `attach` is
/// returned as it is, and `during` does not run.
pub fn held_alone<T>(
    attach: impl FnOnce() -> CaseResult<OwnedFd> + Send,
    during: impl FnOnce() -> T,
) -> CaseResult<T> {
    std::thread::scope(|s| {
        let (attached_tx, attached_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let holder = s.spawn(move || -> CaseResult {
            unshare(CloneFlags::CLONE_FILES)
                .or_error("giving the link's thread a descriptor table of its own")?;
            let link = attach()?;
            close_all_but(link.as_raw_fd());
            let _ = attached_tx.send(());
            // Until `during` returned (or unwound, which drops the sender).
            let _ = done_rx.recv();
            drop(link);
            Ok(())
        });
        let value = attached_rx.recv().ok().map(|()| during());
        drop(done_tx);
        holder
            .join()
            .map_err(|_| CaseError::Error(anyhow::anyhow!("the link's thread panicked")))??;
        value.ok_or_else(|| {
            CaseError::Error(anyhow::anyhow!(
                "the link's thread ended without a link or an error"
            ))
        })
    })
}

/// Closes this thread's copies of the descriptors it inherited (all but stdio and `keep`): they
/// would hold other tests' pipes, sockets and links open as long as the thread lives.
fn close_all_but(keep: i32) {
    let keep = keep as u32;
    // SAFETY: called on a thread whose descriptor table is its own, which uses no descriptor but
    // `keep` afterwards; other threads' descriptors are not touched.
    unsafe {
        if keep > 3 {
            libc::close_range(3, keep - 1, 0);
        }
        libc::close_range(keep + 1, u32::MAX, 0);
    }
}
