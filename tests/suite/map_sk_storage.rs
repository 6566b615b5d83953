//! BPF_MAP_TYPE_SK_STORAGE (`programs/src/bpf/map_sk_storage.bpf.c`): a cgroup_skb egress
//! program counts the packets of each socket in the socket's storage; user space reads and writes
//! the counter by a socket fd.
//!
//! `one_value_per_socket_created_on_demand`: a child in the cgroup (in a fresh namespace) opens
//! UDP sockets A, B and R and stays alive; the test takes copies of its three descriptors
//! (pidfd_getfd) and sends 3 datagrams from A and 5 from B to R: the sockets are the cgroup's,
//! wherever their descriptors are. By those copies, A holds 3, B 5 and R nothing (`ENOENT`: it
//! never sent). User space writes 100 into A's element and one more datagram from A makes it 101.
//! Deleted from user space, B's element is gone and A's stays. The child ended, A lives on
//! through the test's copy and keeps its element; once a new socket takes that last descriptor's
//! number (dup2), A is gone and the number finds nothing. Datagrams whose get answered NULL
//! (`missed`, see `testkit::local_storage`) are not counted.

use std::mem::MaybeUninit;
use std::net::UdpSocket;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::map_sk_storage::MapSkStorageSkelBuilder;
use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};
use testkit::local_storage::{counter, value};
use testkit::observe::volatile;
use testkit::{Case, CaseError, CaseResult, Cgroup, NetNs, OrError, child, probe};

/// In the child: sockets A, B, R, bound; their descriptor numbers.
fn open_sockets() -> Result<[i32; 3], nix::errno::Errno> {
    let bind = || child::errno(UdpSocket::bind("127.0.0.1:0"));
    let sockets = [bind()?, bind()?, bind()?];
    let fds = sockets.each_ref().map(|s| s.as_raw_fd());
    // Kept open for the test to copy: the child stays alive until the test ends it.
    std::mem::forget(sockets);
    Ok(fds)
}

/// `times` datagrams from `from` to `to`.
fn send(from: &OwnedFd, to: &OwnedFd, times: usize) -> CaseResult {
    let (from, to) = (
        UdpSocket::from(from.try_clone()?),
        UdpSocket::from(to.try_clone()?),
    );
    let to = to.local_addr()?;
    for _ in 0..times {
        from.send_to(b"counted", to)
            .or_error("sending a datagram")?;
    }
    Ok(())
}

#[test]
fn one_value_per_socket_created_on_demand() {
    Case::run(ProgramType::CgroupSkb, |case| {
        probe::map_type(MapType::SkStorage, "map_type.sk_storage")?;
        probe::helper(
            ProgramType::CgroupSkb,
            libbpf_sys::BPF_FUNC_sk_storage_get,
            "bpf_sk_storage_get",
        )?;
        let mut object = MaybeUninit::uninit();
        let skel = case.load(MapSkStorageSkelBuilder::default().open(&mut object)?)?;
        let (ns, cg) = (NetNs::new()?, Cgroup::new()?);
        let _link = skel.progs.count.attach_cgroup(cg.as_fd().as_raw_fd())?;
        let (fds, held) = child::in_cgroup(&cg).netns(&ns).hold(open_sockets)?;
        let fds = fds.map_err(|e| CaseError::Error(anyhow::anyhow!("the child's sockets: {e}")))?;
        let pid = Pid::from_raw(held.pid().as_raw()).expect("a child's pid is positive");
        let pidfd = pidfd_open(pid, PidfdFlags::empty())?;
        let copy = |fd: i32| -> CaseResult<OwnedFd> {
            Ok(pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty())?)
        };
        let (a, b, r) = (copy(fds[0])?, copy(fds[1])?, copy(fds[2])?);
        let bss = skel.maps.bss_data.as_deref().expect(".bss");
        let missed = || volatile(&bss.missed);
        send(&a, &r, 3)?;
        let a_missed = missed();
        send(&b, &r, 5)?;
        let b_missed = missed() - a_missed;

        let map = &skel.maps.packets;
        let counts = [value(map, &a), value(map, &b), value(map, &r)];
        case.detail("counts", format!("{counts:?}"));
        case.detail("missed", [a_missed, b_missed]);
        assert_eq!(
            counts,
            [
                counter(None, 3, a_missed)?,
                counter(None, 5, b_missed)?,
                Err(libc::ENOENT)
            ],
            "A, B, R"
        );
        let key = |fd: &OwnedFd| fd.as_raw_fd().to_ne_bytes();
        map.update(&key(&a), &100u64.to_ne_bytes(), MapFlags::EXIST)?;
        let before = missed();
        send(&a, &r, 1)?;
        let a_count = counter(Some(100), 1, missed() - before)?;
        assert_eq!(
            value(map, &a),
            a_count,
            "the program counts on from user space's value"
        );
        map.delete(&key(&b))?;
        assert_eq!(
            [value(map, &a), value(map, &b)],
            [a_count, Err(libc::ENOENT)],
            "B deleted"
        );

        // The child's descriptors close with it; the test's copy keeps A (and its element).
        held.end()?;
        assert_eq!(value(map, &a), a_count, "A after the child");
        // A's last descriptor now names a new socket: A is gone, and the number finds nothing.
        let new = {
            let _inside = ns.enter()?;
            UdpSocket::bind("127.0.0.1:0").or_error("a new socket")?
        };
        let mut a = a;
        nix::unistd::dup2(&new, &mut a).or_error("dup2 over A's descriptor")?;
        assert_eq!(
            value(map, &a),
            Err(libc::ENOENT),
            "a new socket under A's number"
        );
        Ok(())
    });
}
