// SPDX-License-Identifier: GPL-2.0
/*
 * BTF-enabled raw tracepoints on sys_enter and sys_exit: the arguments are typed (a struct
 * pt_regs * and the syscall id at entry, the pt_regs and the return value at exit), and the
 * registers are read straight through the pointer, no probe_read. For one thread, chosen before
 * load, entry logs {id, first argument} and exit {id (orig_rax), return value} of every syscall,
 * in order.
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define SLOTS 32

struct call {
	__s64 id;
	__s64 value;
};

const volatile __u32 target_tid = 0;

__u32 entered = 0;
struct call entries[SLOTS] = {};
__u32 exited = 0;
struct call exits[SLOTS] = {};

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
	__u32 i = entered;

	if ((__u32)bpf_get_current_pid_tgid() != target_tid)
		return 0;
	entered = i + 1;
	if (i < SLOTS) {
		entries[i].id = id;
#ifdef BPFCONF_MUTANT /* sys_enter records the second argument (PT_REGS_PARM2) instead of the first */
		entries[i].value = PT_REGS_PARM2(regs);
#else
		entries[i].value = PT_REGS_PARM1(regs);
#endif
	}
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	__u32 i = exited;

	if ((__u32)bpf_get_current_pid_tgid() != target_tid)
		return 0;
	exited = i + 1;
	if (i < SLOTS) {
		exits[i].id = regs->orig_rax;
		exits[i].value = ret;
	}
	return 0;
}

char _license[] SEC("license") = "GPL";
