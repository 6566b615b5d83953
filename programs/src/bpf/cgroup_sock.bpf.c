// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup_sock: the socket-creation hook of a cgroup v2 child (BPF_CGROUP_INET_SOCK_CREATE).
 *
 * Runs when a process in the cgroup creates an AF_INET or AF_INET6 socket. Raw sockets are
 * refused (verdict 0: socket(2) fails with EPERM) and counted in `denied`; every other socket is
 * allowed (1) with its mark set to `mark` (the owner reads it back with getsockopt(SO_MARK)).
 */
#include <linux/bpf.h>
#include <linux/socket.h>
#include <bpf/bpf_helpers.h>

/* <linux/net.h>'s enum sock_type, which the UAPI headers do not export. */
#define SOCK_RAW 3

/* Set by the test before load. */
const volatile __u32 mark = 0;

__u64 denied = 0;
__u64 marked = 0;

SEC("cgroup/sock_create")
int deny_raw_mark_others(struct bpf_sock *sk)
{
#ifdef BPFCONF_MUTANT /* sets the mark on SOCK_RAW sockets too and allows them (the type check inverted) */
	if (sk->type != SOCK_RAW) {
#else
	if (sk->type == SOCK_RAW) {
#endif
		__sync_fetch_and_add(&denied, 1);
		return 0;
	}
	sk->mark = mark;
	__sync_fetch_and_add(&marked, 1);
	return 1;
}

char _license[] SEC("license") = "GPL";
