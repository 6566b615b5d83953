//! What the cgroup_sock_addr modules share (`cgroup_sock_addr`, `_names`, `_unix`): the probe of
//! one attach type of the program type, sockets made inside the case's namespace, and a listener
//! thread that serves one connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};

use libbpf_rs::{ProgramAttachType, ProgramType};

use crate::insn::{Asm, Reg};
use crate::outcome::{CaseError, CaseResult, OrError};
use crate::raw_load::RawProgram;
use crate::{LogLevel, NetNs, child, floors, observe, probe};

/// The kernel loads cgroup_sock_addr programs for `attach` (a minimal one: `r0 = 1; exit`), feature
/// `id`: a kernel that does not know the attach type refuses it with EINVAL, judged by the floor.
pub fn probe_attach_type(id: &str, attach: ProgramAttachType) -> CaseResult {
    let insns = Asm::new().mov64_imm(Reg::R0, 1).exit().to_bpf();
    probe::prog_type(ProgramType::CgroupSockAddr)?;
    let load = RawProgram::new("probe", ProgramType::CgroupSockAddr, insns)
        .expected_attach_type(attach.clone())
        .log_level(LogLevel::Stats)
        .load();
    match load.outcome.errno.as_deref() {
        None if floors::has(id, true) => Ok(()),
        None => Err(floors::missing(id, "loaded")),
        Some("EINVAL") => Err(floors::missing(
            id,
            format!("loading a program for {attach:?}: EINVAL"),
        )),
        Some(errno) => Err(CaseError::Error(anyhow::anyhow!(
            "probing {id}: loading `r0 = 1; exit` failed with {errno}"
        ))),
    }
}

/// Runs `f` (which makes sockets) with the calling thread inside `ns`.
pub fn inside<T>(ns: &NetNs, f: impl FnOnce() -> std::io::Result<T>) -> CaseResult<T> {
    let _inside = ns.enter()?;
    f().or_error("creating a socket in the test netns")
}

/// Accepts one connection on `listener` within [`child::TIMEOUT`], reads the child's greeting
/// and answers `reply`; its address and greeting, or `None` when nobody connected.
pub fn serve_once(
    listener: TcpListener,
    reply: String,
) -> std::thread::JoinHandle<std::io::Result<Option<(SocketAddr, String)>>> {
    std::thread::spawn(move || {
        if !observe::readable(&listener, child::TIMEOUT)? {
            return Ok(None);
        }
        let (mut stream, peer) = listener.accept()?;
        stream.set_read_timeout(Some(child::TIMEOUT))?;
        let mut buf = [0u8; 100];
        let n = stream.read(&mut buf)?;
        stream.write_all(reply.as_bytes())?;
        Ok(Some((
            peer,
            String::from_utf8_lossy(&buf[..n]).into_owned(),
        )))
    })
}
