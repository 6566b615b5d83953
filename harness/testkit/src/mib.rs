//! The network statistics (SNMP MIB counters) of the calling thread's network namespace, as
//! `nstat` reads them: `/proc/thread-self/net/netstat` (`TcpExt`, `IpExt`, …) holds a line of
//! names and a line of values per group. A fresh namespace starts them at 0, so a case in its own
//! namespace can assert exact counts.

use std::fs;

use crate::outcome::{CaseError, CaseResult, OrError};

/// The counter `name` of group `group` (`TcpExt`, `TCPMigrateReqSuccess`).
pub fn counter(group: &str, name: &str) -> CaseResult<u64> {
    let path = "/proc/thread-self/net/netstat";
    let text = fs::read_to_string(path).or_error(&format!("reading {path}"))?;
    find(&text, group, name).ok_or_else(|| {
        CaseError::Error(anyhow::anyhow!(
            "{path} has no counter {group}:{name} (a kernel without it: check its floor first)"
        ))
    })
}

fn find(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (names, values) = (lines.next()?, lines.next()?);
    let index = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(index)?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_value_under_the_name() {
        let text = "TcpExt: SyncookiesSent TCPMigrateReqSuccess\nTcpExt: 4 3\n\
                    IpExt: InNoRoutes\nIpExt: 9\n";
        assert_eq!(super::find(text, "TcpExt", "TCPMigrateReqSuccess"), Some(3));
        assert_eq!(super::find(text, "IpExt", "InNoRoutes"), Some(9));
        assert_eq!(super::find(text, "TcpExt", "Missing"), None);
    }
}
