//! The id a record's column is known by (`6.1`, `host-6.18`).

/// `uname -r` of the running kernel.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// The matrix id of the kernel `release`: `$BPFCONF_KERNEL` when set, else [`derive_id`].
pub fn kernel_id(release: &str) -> String {
    std::env::var("BPFCONF_KERNEL")
        .ok()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| derive_id(release))
}

/// `6.1.0-50-amd64` → `6.1`; any release that is not a Debian build → `host-M.m`.
pub fn derive_id(release: &str) -> String {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next().unwrap_or("0");
    let minor = parts.next().unwrap_or("0");
    if release.ends_with("-amd64") || release.ends_with("-arm64") {
        format!("{major}.{minor}")
    } else {
        format!("host-{major}.{minor}")
    }
}

#[cfg(test)]
mod tests {
    use super::derive_id;

    #[test]
    fn ids_follow_debian_and_host_releases() {
        assert_eq!(derive_id("6.1.0-50-amd64"), "6.1");
        assert_eq!(derive_id("6.12.107+deb13-amd64"), "6.12");
        assert_eq!(derive_id("5.10.0-32-amd64"), "5.10");
        assert_eq!(derive_id("6.18.44-fc-v782"), "host-6.18");
    }
}
