// SPDX-License-Identifier: GPL-2.0
/*
 * perf_event_link: a tracepoint program attached to perf events through BPF links
 * (BPF_LINK_CREATE with BPF_PERF_EVENT, Linux 5.15+), each link with its own cookie (bpf_cookie),
 * which the program reads with bpf_get_attach_cookie. Here one program on two tracepoints,
 * syscalls/sys_enter_getpgid (cookie 1) and syscalls/sys_enter_getsid (cookie 2): for one thread,
 * chosen before load, it counts its runs per cookie (cookies outside 0..3 in slot 0).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define COOKIES 4

const volatile __u32 target_tid = 0;

__u64 runs[COOKIES] = {};

SEC("tracepoint")
int count_by_cookie(void *ctx)
{
	__u64 cookie;

	if ((__u32)bpf_get_current_pid_tgid() != target_tid)
		return 0;
#ifdef BPFCONF_MUTANT /* ignores the attach cookie: every run is counted in slot 0 */
	cookie = 0;
#else
	cookie = bpf_get_attach_cookie(ctx);
#endif
	runs[cookie < COOKIES ? cookie : 0] += 1;
	return 0;
}

char _license[] SEC("license") = "GPL";
