// SPDX-License-Identifier: GPL-2.0
/*
 * A BPF LSM program on the socket_create hook: it runs only where `bpf` is among the active LSMs,
 * after the other LSMs' verdicts (`ret`). It refuses, with -EACCES, the socket(2) calls of the
 * thread and the (family, type) chosen before load, and lets every other call through.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define EACCES 13

const volatile __u32 target_tid = 0;
const volatile int target_family = 0;
const volatile int target_type = 0;

__u32 seen = 0;
__u32 denied = 0;

SEC("lsm/socket_create")
int BPF_PROG(deny_socket, int family, int type, int protocol, int kern, int ret)
{
#ifdef BPFCONF_MUTANT /* filters by the process (tgid) instead of the thread: the target's other threads are refused too */
	if (ret || (__u32)(bpf_get_current_pid_tgid() >> 32) != target_tid)
#else
	if (ret || (__u32)bpf_get_current_pid_tgid() != target_tid)
#endif
		return ret;
	seen += 1;
	if (family != target_family || type != target_type)
		return 0;
	denied += 1;
	return -EACCES;
}

char _license[] SEC("license") = "GPL";
