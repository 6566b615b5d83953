// SPDX-License-Identifier: GPL-2.0
/*
 * fsession: one trampoline program run at both the entry and the exit of a kernel function
 * (BPF_TRACE_FSESSION, Linux 7.0+), here the getpgid syscall's entry function, whose name the
 * harness resolves at run time and sets as the attach target before load (it takes one
 * struct pt_regs * holding the syscall's registers).
 *
 * For one thread, chosen before load: the entry run (bpf_session_is_return false) logs the pid
 * argument and leaves pid + 1 in the session cookie; the exit run logs the pid the cookie holds
 * (its own entry run's) and the return value. `no_session` counts runs on a kernel without the
 * session kfuncs of 7.0.
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define SLOTS 8

extern _Bool bpf_session_is_return(void *ctx) __ksym __weak;
extern __u64 *bpf_session_cookie(void *ctx) __ksym __weak;

const volatile __u32 target_tid = 0;

__u32 entries = 0;
__u64 entry_pid[SLOTS] = {};
__u32 exits = 0;
__u64 exit_pid[SLOTS] = {};
__s64 exit_ret[SLOTS] = {};
__u32 no_session = 0;

SEC("fsession")
int BPF_PROG(getpgid_session, struct pt_regs *regs, long ret)
{
	__u64 *cookie;
	__u32 i;

	if ((__u32)bpf_get_current_pid_tgid() != target_tid)
		return 0;
	if (!bpf_ksym_exists(bpf_session_is_return) || !bpf_ksym_exists(bpf_session_cookie)) {
		no_session += 1;
		return 0;
	}
	cookie = bpf_session_cookie(ctx);
	if (!bpf_session_is_return(ctx)) {
#ifdef BPFCONF_MUTANT /* the entry stores the pid in the session cookie without the +1 the exit takes off (off by one) */
		*cookie = PT_REGS_PARM1(regs);
#else
		*cookie = PT_REGS_PARM1(regs) + 1;
#endif
		i = entries;
		entries = i + 1;
		if (i < SLOTS)
			entry_pid[i] = PT_REGS_PARM1(regs);
		return 0;
	}
	i = exits;
	exits = i + 1;
	if (i < SLOTS) {
		exit_pid[i] = *cookie - 1;
		exit_ret[i] = ret;
	}
	return 0;
}

char _license[] SEC("license") = "GPL";
