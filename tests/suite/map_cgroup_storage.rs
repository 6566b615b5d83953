//! BPF_MAP_TYPE_CGROUP_STORAGE (`programs/src/bpf/map_cgroup_storage.bpf.c`): a cgroup_skb egress
//! program counts packets and bytes in the storage of the cgroup it is attached to.
//!
//! `one_element_per_attachment_gone_with_it`: the program attached to cgroups X and Y; a child in
//! X sends 3 datagrams of 100 bytes over loopback (in a fresh namespace), one in Y 5 of 10 bytes.
//! The map's keys are exactly the two attachments ({X's id, BPF_CGROUP_INET_EGRESS} and Y's),
//! holding 3 packets / 3 × 128 bytes and 5 / 5 × 38. The element is the cgroup's (from 5.9,
//! 7d9c3427894f): detached from Y, the program leaves Y's element in place. Once Y is removed
//! (rmdir), its element leaves the map (awaited: it must happen, once the last reference to the
//! cgroup is gone): the keys are X's alone and a look-up of Y's finds nothing.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::map_cgroup_storage::MapCgroupStorageSkelBuilder;
use testkit::{Case, CaseError, CaseResult, Cgroup, NetNs, child, observe, probe, traffic};

/// `struct bpf_cgroup_storage_key` of `cgroup`'s egress attachment.
fn key(cgroup_id: u64) -> Vec<u8> {
    let mut key = cgroup_id.to_ne_bytes().to_vec();
    key.extend(libbpf_sys::BPF_CGROUP_INET_EGRESS.to_ne_bytes());
    key.extend([0; 4]);
    key
}

/// (packets, bytes) stored under `key`, `None` when there is no element.
fn traffic_of(map: &dyn MapCore, key: &[u8]) -> CaseResult<Option<(u64, u64)>> {
    let word = |v: &[u8], i: usize| u64::from_ne_bytes(v[i..i + 8].try_into().expect("8"));
    Ok(map
        .lookup(key, MapFlags::ANY)?
        .map(|v| (word(&v, 0), word(&v, 8))))
}

/// Sends `count` datagrams of `len` bytes from a child in `cg`.
fn send(cg: &Cgroup, ns: &NetNs, count: usize, len: usize) -> CaseResult {
    child::in_cgroup(cg)
        .netns(ns)
        .run(|| traffic::udp_to_self(count, len))?
        .map_err(|e| CaseError::Error(anyhow::anyhow!("the child's datagrams: {e}")))
}

#[test]
fn one_element_per_attachment_gone_with_it() {
    Case::run(ProgramType::CgroupSkb, |case| {
        probe::map_type(MapType::CgroupStorage, "map_type.cgroup_storage")?;
        probe::helper(
            ProgramType::CgroupSkb,
            libbpf_sys::BPF_FUNC_get_local_storage,
            "bpf_get_local_storage",
        )?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapCgroupStorageSkelBuilder::default().open(&mut object)?)?;
        let ns = NetNs::new()?;
        let (x, y) = (Cgroup::new()?, Cgroup::new()?);
        let _x_link = skel.progs.count.attach_cgroup(x.as_fd().as_raw_fd())?;
        let y_link = skel.progs.count.attach_cgroup(y.as_fd().as_raw_fd())?;
        send(&x, &ns, 3, 100)?;
        send(&y, &ns, 5, 10)?;

        let map = &skel.maps.traffic;
        let (x_key, y_key) = (key(x.id()?), key(y.id()?));
        let mut keys: Vec<Vec<u8>> = map.keys().collect();
        keys.sort();
        let mut want = vec![x_key.clone(), y_key.clone()];
        want.sort();
        assert_eq!(keys, want, "one element per attachment");
        let counts = [traffic_of(map, &x_key)?, traffic_of(map, &y_key)?];
        case.detail("x_y", counts);
        assert_eq!(counts, [Some((3, 3 * 128)), Some((5, 5 * 38))], "X, Y");

        // The element is the cgroup's, not the attachment's: it outlives the detach.
        drop(y_link);
        assert_eq!(traffic_of(map, &y_key)?, Some((5, 5 * 38)), "Y detached");
        drop(y);
        let gone = observe::poll(observe::MUST_ARRIVE, || {
            (map.keys().collect::<Vec<_>>() == [x_key.clone()]).then_some(())
        });
        assert!(gone.is_some(), "Y's element outlived its cgroup");
        assert_eq!(traffic_of(map, &y_key)?, None, "Y's element");
        assert_eq!(traffic_of(map, &x_key)?, Some((3, 3 * 128)), "X's element");
        Ok(())
    });
}
