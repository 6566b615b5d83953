//! BPF_MAP_TYPE_SK_STORAGE (`programs/src/bpf/map_sk_storage.bpf.c`): a cgroup_skb egress
//! program counts the packets of each socket in the socket's storage; user space reads and writes
//! the counter by a socket fd.
//!
//! `one_value_per_socket_created_on_demand`: a child in the cgroup (in a fresh namespace) opens
//! UDP sockets A, B and R, sends 3 datagrams from A and 5 from B to R, and stays alive; the test
//! takes copies of its three descriptors (pidfd_getfd). By those, A holds 3, B 5 and R nothing
//! (`ENOENT`: it never sent). User space writes 100 into A's element and the test sends one more
//! datagram through its copy of A (the socket is the cgroup's wherever its fd is): 101. Deleted
//! from user space, B's element is gone and A's stays. The child ended, A lives on through the
//! test's copy and keeps its element; once a new socket takes that last descriptor's number
//! (dup2), A is gone and the number finds nothing.

use std::mem::MaybeUninit;
use std::net::UdpSocket;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::SkelBuilder;
use libbpf_rs::{MapCore, MapFlags, MapType, ProgramType};
use programs::map_sk_storage::MapSkStorageSkelBuilder;
use rustix::process::{Pid, PidfdFlags, PidfdGetfdFlags, pidfd_getfd, pidfd_open};
use testkit::{Case, CaseError, CaseResult, Cgroup, NetNs, OrError, child, errno, probe};

/// The counter stored for the socket of `fd`, or the errno of the look-up.
fn count(map: &dyn MapCore, fd: impl AsFd) -> Result<u64, i32> {
    let key = fd.as_fd().as_raw_fd().to_ne_bytes();
    match map.lookup(&key, MapFlags::ANY) {
        Ok(Some(value)) => Ok(u64::from_ne_bytes(value[..8].try_into().expect("8 bytes"))),
        Ok(None) => Err(libc::ENOENT),
        Err(e) => Err(errno::of_libbpf(&e).unwrap_or(-1)),
    }
}

/// In the child: sockets A, B, R; 3 datagrams A → R, 5 B → R. Their descriptor numbers.
fn open_and_send() -> Result<[i32; 3], nix::errno::Errno> {
    let bind = || child::errno(UdpSocket::bind("127.0.0.1:0"));
    let (a, b, r) = (bind()?, bind()?, bind()?);
    let to = child::errno(r.local_addr())?;
    for (socket, times) in [(&a, 3), (&b, 5)] {
        for _ in 0..times {
            child::errno(socket.send_to(b"counted", to))?;
        }
    }
    let fds = [a.as_raw_fd(), b.as_raw_fd(), r.as_raw_fd()];
    // Kept open for the test to copy: the child stays alive until the test ends it.
    std::mem::forget((a, b, r));
    Ok(fds)
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
        let (fds, held) = child::in_cgroup(&cg).netns(&ns).hold(open_and_send)?;
        let fds = fds.map_err(|e| CaseError::Error(anyhow::anyhow!("the child's sockets: {e}")))?;
        let pid = Pid::from_raw(held.pid().as_raw()).expect("a child's pid is positive");
        let pidfd = pidfd_open(pid, PidfdFlags::empty())?;
        let copy = |fd: i32| -> CaseResult<OwnedFd> {
            Ok(pidfd_getfd(&pidfd, fd, PidfdGetfdFlags::empty())?)
        };
        let (a, b, r) = (copy(fds[0])?, copy(fds[1])?, copy(fds[2])?);

        let map = &skel.maps.packets;
        let counts = [count(map, &a), count(map, &b), count(map, &r)];
        case.detail("counts", format!("{counts:?}"));
        assert_eq!(counts, [Ok(3), Ok(5), Err(libc::ENOENT)], "A, B, R");
        let key = |fd: &OwnedFd| fd.as_raw_fd().to_ne_bytes();
        map.update(&key(&a), &100u64.to_ne_bytes(), MapFlags::EXIST)?;
        {
            let (send, to) = (UdpSocket::from(a.try_clone()?), UdpSocket::from(r));
            send.send_to(b"one more", to.local_addr()?)
                .or_error("sending through the copy of A")?;
        }
        assert_eq!(
            count(map, &a),
            Ok(101),
            "the program counts on from user space's value"
        );
        map.delete(&key(&b))?;
        assert_eq!(
            [count(map, &a), count(map, &b)],
            [Ok(101), Err(libc::ENOENT)],
            "B deleted"
        );

        // The child's descriptors close with it; the test's copy keeps A (and its element).
        held.end()?;
        assert_eq!(count(map, &a), Ok(101), "A after the child");
        // A's last descriptor now names a new socket: A is gone, and the number finds nothing.
        let new = {
            let _inside = ns.enter()?;
            UdpSocket::bind("127.0.0.1:0").or_error("a new socket")?
        };
        let mut a = a;
        nix::unistd::dup2(&new, &mut a).or_error("dup2 over A's descriptor")?;
        assert_eq!(
            count(map, &a),
            Err(libc::ENOENT),
            "a new socket under A's number"
        );
        Ok(())
    });
}
