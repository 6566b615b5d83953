// SPDX-License-Identifier: GPL-2.0
/*
 * fentry and fexit (BPF trampolines) on the getpgid syscall's entry function, whose name the
 * harness resolves at run time (__x64_sys_getpgid, taking one struct pt_regs * that holds the
 * syscall's registers) and sets as the attach target before load. For one thread, chosen before
 * load, entry records each call's pid argument (read through the typed pointer, no probe_read)
 * and exit the argument and the return value, in call order.
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define SLOTS 8

const volatile __u32 target_tid = 0;

__u32 entries = 0;
__u64 entry_pid[SLOTS] = {};
__u32 exits = 0;
__u64 exit_pid[SLOTS] = {};
__s64 exit_ret[SLOTS] = {};

SEC("fentry")
int BPF_PROG(getpgid_entry, struct pt_regs *regs)
{
	__u32 i = entries;

	if ((__u32)bpf_get_current_pid_tgid() != target_tid)
		return 0;
	entries = i + 1;
	if (i < SLOTS)
		entry_pid[i] = PT_REGS_PARM1(regs);
	return 0;
}

SEC("fexit")
int BPF_PROG(getpgid_exit, struct pt_regs *regs, long ret)
{
	__u32 i = exits;

	if ((__u32)bpf_get_current_pid_tgid() != target_tid)
		return 0;
	exits = i + 1;
	if (i < SLOTS) {
		exit_pid[i] = PT_REGS_PARM1(regs);
#ifdef BPFCONF_MUTANT /* fexit records the argument (PT_REGS_PARM1) as the return value */
		exit_ret[i] = PT_REGS_PARM1(regs);
#else
		exit_ret[i] = ret;
#endif
	}
	return 0;
}

char _license[] SEC("license") = "GPL";
