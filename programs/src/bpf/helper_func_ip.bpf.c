// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_get_func_ip (5.15) in a kprobe on the entry of a syscall function the test calls (resolved
 * at run time, harness::ksyscall): for the test's own thread, stores the address the helper
 * reports, which the test compares with the function's address in /proc/kallsyms.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u32 tid = 0;
__u32 hits = 0;
__u64 ip = 0;

SEC("kprobe")
int func_ip(void *ctx)
{
	if ((__u32)bpf_get_current_pid_tgid() != tid)
		return 0;
	ip = bpf_get_func_ip(ctx);
	hits++;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
