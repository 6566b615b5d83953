//! Links: taking the one a libbpf attach call made ([`adopt`]), and closing an attachment (a BPF
//! link, a perf event, a socket) so that the close is the detach ([`release`]).
//!
//! A link detaches its program when its last reference goes, and a process forked while the
//! link's fd is open holds a reference of its own until it closes its copy: in a test binary whose
//! other tests fork at any time ([`crate::child`]), a test's own close may leave the program
//! attached for a while, and a check that the program no longer runs is then a race. Waiting until
//! the link's id no longer resolves does not close that gap: the kernel frees the id before it
//! detaches (`bpf_link_free`: `bpf_link_free_id`, then `ops->release`).
//!
//! [`release`] closes it while no child holds a copy: a fork holds [`FORKS`] for reading until the
//! child has closed what it inherited, and [`release`] holds it for writing. Its close(2) then
//! drops the last reference, and the kernel releases a file before close(2) returns to user space.
//! (Commands a test spawns hold copies between their fork and exec, where `O_CLOEXEC` closes them:
//! a window of microseconds, not covered.)

use std::ptr::NonNull;

use libbpf_rs::{Link, libbpf_sys};
use nix::errno::Errno;

use crate::child::FORKS;

/// The link a `bpf_program__attach_*` call of libbpf's returned (for attach calls libbpf-rs does
/// not wrap: tcx, kprobe sessions, freplace), or the errno libbpf set when it returned NULL.
///
/// # Safety
/// `link` is what that call returned, and nothing else took ownership of it.
pub unsafe fn adopt(link: *mut libbpf_sys::bpf_link) -> Result<Link, Errno> {
    match NonNull::new(link) {
        // SAFETY: a link libbpf just made, owned by nobody else (the caller's promise).
        Some(link) => Ok(unsafe { Link::from_ptr(link) }),
        None => Err(Errno::last()),
    }
}

/// Drops `attachment` (a libbpf-rs link, an fd, anything that closes descriptors when dropped)
/// while no forked child holds a copy of them: when this returns, the kernel has released them
/// (a link's program is detached) unless the test itself holds another reference.
pub fn release<T>(attachment: T) {
    let _no_forks = FORKS.write().unwrap_or_else(|e| e.into_inner());
    drop(attachment);
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;
    use std::sync::atomic::{AtomicBool, Ordering};

    use nix::fcntl::OFlag;
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use nix::unistd::pipe2;

    use super::release;
    use crate::child::Child;

    /// While another thread forks children without pause, the write end of a pipe released here
    /// is gone at once: its reader sees the hang-up without waiting (with a plain drop instead of
    /// `release`, 5 of 5 runs failed, at rounds 201 to 11,821).
    #[test]
    fn a_released_descriptor_has_no_copy_in_a_child() {
        let stop = AtomicBool::new(false);
        let held = std::thread::scope(|s| {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    let _ = Child::default().run(|| ());
                }
            });
            let held = (0..20_000).find(|_| {
                let (read, write) = pipe2(OFlag::O_CLOEXEC).expect("a pipe");
                release(write);
                let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
                let ready = poll(&mut fds, PollTimeout::ZERO).expect("poll");
                let hung_up = fds[0]
                    .revents()
                    .is_some_and(|r| r.contains(PollFlags::POLLHUP));
                !(ready == 1 && hung_up)
            });
            stop.store(true, Ordering::Relaxed);
            held
        });
        assert_eq!(
            held, None,
            "the round where a child still held the write end"
        );
    }
}
