// SPDX-License-Identifier: GPL-2.0
/*
 * uprobe and uretprobe on a function of the test binary itself (attached by symbol name: libbpf
 * resolves its offset in the ELF file). Entry records the two integer arguments of each call,
 * return the return value, in call order.
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define SLOTS 8

__u32 entries = 0;
__u64 entry_a[SLOTS] = {};
__u64 entry_b[SLOTS] = {};
__u32 returns = 0;
__u64 returned[SLOTS] = {};

SEC("uprobe")
#ifdef BPFCONF_MUTANT /* declares the probed function's two parameters in the wrong order */
int BPF_UPROBE(target_entry, __u64 b, __u64 a)
#else
int BPF_UPROBE(target_entry, __u64 a, __u64 b)
#endif
{
	__u32 i = entries;

	entries = i + 1;
	if (i < SLOTS) {
		entry_a[i] = a;
		entry_b[i] = b;
	}
	return 0;
}

SEC("uretprobe")
int BPF_URETPROBE(target_return, __u64 ret)
{
	__u32 i = returns;

	returns = i + 1;
	if (i < SLOTS)
		returned[i] = ret;
	return 0;
}

char _license[] SEC("license") = "GPL";
