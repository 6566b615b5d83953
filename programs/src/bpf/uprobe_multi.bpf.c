// SPDX-License-Identifier: GPL-2.0
/*
 * uprobe.multi and uretprobe.multi: one link each over several functions of the test binary
 * itself, for the test's process only. Each run logs, in call order, the cookie the link gave the
 * function, the function's address (bpf_get_func_ip) and the first argument (entry) or the return
 * value (return). The program filters nothing itself: which runs happen is the link's doing.
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define SLOTS 16

struct hit {
	__u64 cookie;
	__u64 ip;
	__u64 value;
};

__u32 entries = 0;
struct hit entry_log[SLOTS] = {};
__u32 returns = 0;
struct hit return_log[SLOTS] = {};

static __always_inline void record(void *ctx, __u32 *count, struct hit *log, __u64 value)
{
	__u32 i = *count;

	*count = i + 1;
	if (i < SLOTS) {
		log[i].cookie = bpf_get_attach_cookie(ctx);
		log[i].ip = bpf_get_func_ip(ctx);
		log[i].value = value;
	}
}

SEC("uprobe.multi")
int BPF_UPROBE(call_entry, __u64 x)
{
	record(ctx, &entries, entry_log, x);
	return 0;
}

SEC("uretprobe.multi")
int BPF_URETPROBE(call_return, __u64 ret)
{
#ifdef BPFCONF_MUTANT /* the return probe logs into the entry count (a copy-paste slip) */
	record(ctx, &entries, return_log, ret);
#else
	record(ctx, &returns, return_log, ret);
#endif
	return 0;
}

char _license[] SEC("license") = "GPL";
