// SPDX-License-Identifier: GPL-2.0
/*
 * One kprobe_multi link over several kernel functions: the program counts the calls of one
 * thread (chosen before load) per function, told apart by the cookie the link gives each
 * function. Cookie 0 (no cookie) has its own count.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define COOKIES 4

const volatile __u32 target_tid = 0;

__u64 calls[COOKIES] = {};

SEC("kprobe.multi")
int count_calls(void *ctx)
{
	__u64 cookie;

	if ((__u32)bpf_get_current_pid_tgid() != target_tid)
		return 0;
#ifdef BPFCONF_MUTANT /* ignores the attach cookie: every call is counted in slot 0 */
	cookie = 0;
#else
	cookie = bpf_get_attach_cookie(ctx);
#endif
	if (cookie < COOKIES)
		calls[cookie] += 1;
	return 0;
}

char _license[] SEC("license") = "GPL";
