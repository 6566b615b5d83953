//! BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE (`programs/src/bpf/map_percpu_cgroup_storage.bpf.c`): a
//! cgroup_skb egress program counts packets in the running CPU's slot of its cgroup's storage.
//!
//! `one_slot_per_cpu_one_element_per_attachment`: the program attached to cgroups X and Y. A
//! child in X sends, over loopback in a fresh namespace, `k + 1` datagrams from the k-th CPU the
//! test may use, pinned there (its egress runs on the sending CPU); one in Y sends 2 from the
//! first. A look-up hands back one 8-byte slot per possible CPU: X's hold exactly k + 1 in each
//! used CPU's slot and 0 elsewhere, Y's 2 in the first. The keys are the two attachments. Y's
//! element outlives the program's detach (it is the cgroup's) and leaves the map once Y is
//! removed (awaited: it must happen).

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::map_percpu_cgroup_storage::MapPercpuCgroupStorageSkelBuilder;
use testkit::observe::OneCpu;
use testkit::{Case, CaseError, CaseResult, Cgroup, NetNs, child, observe, probe, traffic};

/// `struct bpf_cgroup_storage_key` of `cgroup`'s egress attachment.
fn key(cgroup_id: u64) -> Vec<u8> {
    let mut key = cgroup_id.to_ne_bytes().to_vec();
    key.extend(libbpf_sys::BPF_CGROUP_INET_EGRESS.to_ne_bytes());
    key.extend([0; 4]);
    key
}

/// The per-CPU counts stored under `key`, `None` when there is no element.
fn slots(map: &dyn MapCore, key: &[u8]) -> CaseResult<Option<Vec<u64>>> {
    Ok(map.lookup_percpu(key, MapFlags::ANY)?.map(|cpus| {
        cpus.iter()
            .map(|v| u64::from_ne_bytes(v[..8].try_into().expect("8 bytes")))
            .collect()
    }))
}

/// From a child in `cg`: `counts[k]` datagrams from `cpus[k]`, pinned there.
fn send(cg: &Cgroup, ns: &NetNs, cpus: &[usize], counts: &[usize]) -> CaseResult {
    let mut plan = [(0usize, 0usize); 64];
    for (slot, (&cpu, &count)) in plan.iter_mut().zip(cpus.iter().zip(counts)) {
        *slot = (cpu, count);
    }
    let steps = counts.len();
    child::in_cgroup(cg)
        .netns(ns)
        .run(move || {
            for &(cpu, count) in &plan[..steps] {
                testkit::cpus::pin_thread(cpu)?;
                traffic::udp_to_self(count, 10)?;
            }
            Ok(())
        })?
        .map_err(|e: nix::errno::Errno| {
            CaseError::Error(anyhow::anyhow!("the child's datagrams: {e}"))
        })
}

#[test]
fn one_slot_per_cpu_one_element_per_attachment() {
    Case::run(ProgramType::CgroupSkb, |case| {
        probe::map_type(
            MapType::PercpuCgroupStorage,
            "map_type.percpu_cgroup_storage",
        )?;
        probe::helper(
            ProgramType::CgroupSkb,
            libbpf_sys::BPF_FUNC_get_local_storage,
            "bpf_get_local_storage",
        )?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapPercpuCgroupStorageSkelBuilder::default().open(&mut object)?)?;
        let ns = NetNs::new()?;
        let (x, y) = (Cgroup::new()?, Cgroup::new()?);
        let _x_link = skel.progs.count.attach_cgroup(x.as_fd().as_raw_fd())?;
        let y_link = skel.progs.count.attach_cgroup(y.as_fd().as_raw_fd())?;
        let cpus: Vec<usize> = OneCpu::allowed()?.into_iter().take(64).collect();
        let counts: Vec<usize> = (1..=cpus.len()).collect();
        send(&x, &ns, &cpus, &counts)?;
        send(&y, &ns, &cpus[..1], &[2])?;

        let map = &skel.maps.packets;
        let (x_key, y_key) = (key(x.id()?), key(y.id()?));
        let possible = libbpf_rs::num_possible_cpus()?;
        let mut x_want = vec![0u64; possible];
        for (&cpu, &count) in cpus.iter().zip(&counts) {
            x_want[cpu] = count as u64;
        }
        let mut y_want = vec![0u64; possible];
        y_want[cpus[0]] = 2;
        let got = [slots(map, &x_key)?, slots(map, &y_key)?];
        case.detail("x_y", &got);
        assert_eq!(got, [Some(x_want.clone()), Some(y_want)], "X, Y per CPU");
        let mut keys: Vec<Vec<u8>> = map.keys().collect();
        keys.sort();
        let mut want = vec![x_key.clone(), y_key.clone()];
        want.sort();
        assert_eq!(keys, want, "one element per attachment");

        // The element is the cgroup's: it outlives the detach and goes with the cgroup.
        drop(y_link);
        let mut y_again = vec![0u64; possible];
        y_again[cpus[0]] = 2;
        assert_eq!(slots(map, &y_key)?, Some(y_again), "Y detached");
        drop(y);
        let gone = observe::poll(observe::MUST_ARRIVE, || {
            (map.keys().collect::<Vec<_>>() == [x_key.clone()]).then_some(())
        });
        assert!(gone.is_some(), "Y's element outlived its cgroup");
        assert_eq!(slots(map, &y_key)?, None, "Y's element");
        assert_eq!(slots(map, &x_key)?, Some(x_want), "X's element");
        Ok(())
    });
}
