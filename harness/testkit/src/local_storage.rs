//! Local storage maps (sk, inode, task, cgrp storage) as their modules (`tests/suite/map_*_storage.rs`)
//! observe them: an owner's element read through a descriptor of the owner, and what a counter the
//! program keeps in it must hold.
//!
//! A `bpf_*_storage_get` with `BPF_LOCAL_STORAGE_GET_F_CREATE` may return NULL: the helpers'
//! documented answer when the kernel cannot create the element there and then (7.x allocates it
//! with `kmalloc_nolock` and takes spin locks that give up; 6.x skips the creation when the CPU is
//! already inside a storage operation). The programs count those answers (`missed`), so what an
//! element holds is still exact: one per event, less the events the helper answered NULL.

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags};

use crate::errno;
use crate::outcome::{CaseError, CaseResult};

/// The `u64` the element of the owner of `fd` starts with, or the look-up's errno (`ENOENT`: the
/// owner has no element).
pub fn value(map: &dyn MapCore, fd: impl AsFd) -> Result<u64, i32> {
    let key = fd.as_fd().as_raw_fd().to_ne_bytes();
    match map.lookup(&key, MapFlags::ANY) {
        Ok(Some(value)) => Ok(u64::from_ne_bytes(value[..8].try_into().expect("8 bytes"))),
        Ok(None) => Err(libc::ENOENT),
        Err(e) => Err(errno::of_libbpf(&e).unwrap_or(-1)),
    }
}

/// What a counter must hold after `events` counted events from `start` (`None`: no element yet),
/// `missed` of them answered NULL by the get helper. An owner whose element was never created
/// though it had events (every get answered NULL) is a failure: creation is what the flag asks.
pub fn counter(start: Option<u64>, events: u64, missed: u64) -> CaseResult<Result<u64, i32>> {
    let fail = |why: String| Err(CaseError::Fail(anyhow::anyhow!(why)));
    let Some(counted) = events.checked_sub(missed) else {
        return fail(format!("{missed} NULL answers for {events} events"));
    };
    match (start, counted) {
        (None, 0) if events > 0 => fail(format!(
            "all {events} gets with BPF_LOCAL_STORAGE_GET_F_CREATE answered NULL: no element created"
        )),
        (None, 0) => Ok(Err(libc::ENOENT)),
        (start, counted) => Ok(Ok(start.unwrap_or(0) + counted)),
    }
}
