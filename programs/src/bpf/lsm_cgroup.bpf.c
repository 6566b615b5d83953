// SPDX-License-Identifier: GPL-2.0
/*
 * lsm_cgroup: a BPF LSM program attached to a cgroup (BPF_LSM_CGROUP, Linux 6.0+) on the
 * socket_bind hook. The kernel runs it for the sockets created in the cgroup (a socket hook's
 * programs are those of the socket's cgroup), only where bpf is among the active LSMs.
 *
 * deny_bind: an AF_INET bind(2) to `deny_port` is refused with the default errno (verdict 0:
 * EPERM), one to `errno_port` with EADDRNOTAVAIL (bpf_set_retval, then verdict 0); any other
 * bind is allowed (1). `seen`, `denied` and `refused_errno` count what it did.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define AF_INET 2
#define EADDRNOTAVAIL 99

/* Set by the test before loading (host order). */
const volatile __u16 deny_port = 0;
const volatile __u16 errno_port = 0;

__u64 seen = 0;
__u64 denied = 0;
__u64 refused_errno = 0;

struct socket;

SEC("lsm_cgroup/socket_bind")
int BPF_PROG(deny_bind, struct socket *sock, struct sockaddr_in *address, int addrlen)
{
	struct sockaddr_in sin = {};
	__u16 port;

	if (addrlen < (int)sizeof(sin) || bpf_probe_read_kernel(&sin, sizeof(sin), address))
		return 1;
	if (sin.sin_family != AF_INET)
		return 1;
	__sync_fetch_and_add(&seen, 1);
#ifdef BPFCONF_MUTANT /* compares the port in network byte order (bpf_ntohs forgotten) */
	port = sin.sin_port;
#else
	port = bpf_ntohs(sin.sin_port);
#endif
	if (port == deny_port) {
		__sync_fetch_and_add(&denied, 1);
		return 0;
	}
	if (port == errno_port) {
		__sync_fetch_and_add(&refused_errno, 1);
		bpf_set_retval(-EADDRNOTAVAIL);
		return 0;
	}
	return 1;
}

char _license[] SEC("license") = "GPL";
