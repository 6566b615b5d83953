// SPDX-License-Identifier: GPL-2.0
/*
 * kprobe_session: one program on the entry and the return of kernel functions
 * (BPF_TRACE_KPROBE_SESSION, Linux 6.10+: a kprobe_multi link with the session flag), here the
 * entry functions of getpgid (cookie 1) and getsid (cookie 2), whose one argument is the
 * syscall's struct pt_regs *.
 *
 * For one thread, chosen before load: the entry run logs (cookie, pid argument), leaves pid + 1
 * in the session cookie and returns 0 for getpgid (its return run follows) and 1 for getsid (its
 * return run is skipped). The return run logs (cookie, session cookie - 1, return value): the pid
 * comes from the entry run of the same call. `no_session` counts runs on a kernel without the
 * session kfuncs.
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "session.h"

#define SLOTS 8
#define GETPGID 1

const volatile __u32 target_tid = 0;

__u32 entries = 0;
__u64 entry_cookie[SLOTS] = {};
__u64 entry_pid[SLOTS] = {};
__u32 returns = 0;
__u64 return_cookie[SLOTS] = {};
__u64 return_pid[SLOTS] = {};
__s64 return_value[SLOTS] = {};
__u32 no_session = 0;

SEC("kprobe.session")
int on_call(struct pt_regs *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)PT_REGS_PARM1(ctx);
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u64 *session_cookie;
	_Bool is_return;
	__u64 pid = 0;
	__u32 i;

	if ((__u32)bpf_get_current_pid_tgid() != target_tid)
		return 0;
	if (session(ctx, &is_return, &session_cookie)) {
		no_session += 1;
		return 1;
	}
	if (!is_return) {
		bpf_probe_read_kernel(&pid, sizeof(pid), &PT_REGS_PARM1(regs));
		*session_cookie = pid + 1;
		i = entries;
		entries = i + 1;
		if (i < SLOTS) {
			entry_cookie[i] = cookie;
			entry_pid[i] = pid;
		}
#ifdef BPFCONF_MUTANT /* the entry asks for the return probe of every call, not only getpgid (returns 0 always) */
		return 0;
#else
		return cookie == GETPGID ? 0 : 1;
#endif
	}
	i = returns;
	returns = i + 1;
	if (i < SLOTS) {
		return_cookie[i] = cookie;
		return_pid[i] = *session_cookie - 1;
		return_value[i] = PT_REGS_RC(ctx);
	}
	return 0;
}

char _license[] SEC("license") = "GPL";
