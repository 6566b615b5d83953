//! The inner maps of the map-in-map modules (`programs/src/bpf/map_in_map.h`: arrays of two `u64`,
//! `[0]` the map's identity, `[1]` the lookups a program made through it), created from user space
//! as a program's tenants would be, and maps of other shapes the outer map must refuse.

use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::{MapCore, MapFlags, MapHandle, MapType, libbpf_sys};

use crate::outcome::CaseResult;

/// What `route` returns when the outer map holds no inner map under the key, as in map_in_map.h.
pub const NO_INNER: u32 = 0xffff_ffff;

/// An inner map of the template's shape (array, 4-byte keys, 8-byte values, 2 entries) whose
/// identity is `id`.
pub fn create(id: u64) -> CaseResult<MapHandle> {
    let map = shaped(MapType::Array, 8, 2)?;
    map.update(&0u32.to_ne_bytes(), &id.to_ne_bytes(), MapFlags::ANY)?;
    Ok(map)
}

/// A map of `ty` with 4-byte keys, `value_size` and `max_entries`, no flags.
pub fn shaped(ty: MapType, value_size: u32, max_entries: u32) -> CaseResult<MapHandle> {
    let opts = libbpf_sys::bpf_map_create_opts {
        sz: size_of::<libbpf_sys::bpf_map_create_opts>() as _,
        ..Default::default()
    };
    Ok(MapHandle::create(
        ty,
        None::<&str>,
        4,
        value_size,
        max_entries,
        &opts,
    )?)
}

/// The lookups programs made through `inner`.
pub fn hits(inner: &MapHandle) -> CaseResult<u64> {
    let value = inner
        .lookup(&1u32.to_ne_bytes(), MapFlags::ANY)?
        .expect("an array's index 1");
    Ok(u64::from_ne_bytes(value[..8].try_into().expect("8 bytes")))
}

/// The outer map's value for `inner` from user space: its fd.
pub fn fd_value(inner: &MapHandle) -> [u8; 4] {
    (inner.as_fd().as_raw_fd() as u32).to_ne_bytes()
}

/// The id of `inner`, which a user-space lookup of the outer map hands back.
pub fn id(inner: &MapHandle) -> CaseResult<u32> {
    Ok(inner.info()?.info.id)
}
