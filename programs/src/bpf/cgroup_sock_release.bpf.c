// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup_sock_release: the socket-release hook of a cgroup v2 child
 * (BPF_CGROUP_INET_SOCK_RELEASE, Linux 5.9+).
 *
 * Runs when the last reference to an AF_INET/AF_INET6 socket of the cgroup goes (close(2) of its
 * last descriptor, the owner's exit), whoever drops it: the cgroup is the socket's, fixed when it
 * was created. Logs, in order, the mark and protocol each released socket carries at that moment.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define SLOTS 8

__u32 released = 0;
__u32 marks[SLOTS] = {};
__u32 protocols[SLOTS] = {};

SEC("cgroup/sock_release")
int log_release(struct bpf_sock *sk)
{
	__u32 i = released;

	released = i + 1;
	if (i < SLOTS) {
		marks[i] = sk->mark;
#ifdef BPFCONF_MUTANT /* records sk->type instead of sk->protocol */
		protocols[i] = sk->type;
#else
		protocols[i] = sk->protocol;
#endif
	}
	/* The verdict of a release is ignored; 1 is the only one that reads as "allow". */
	return 1;
}

char _license[] SEC("license") = "GPL";
