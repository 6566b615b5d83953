// SPDX-License-Identifier: GPL-2.0
/*
 * uprobe_session: one program on the entry and the return of user-space functions
 * (BPF_TRACE_UPROBE_SESSION, Linux 6.13+: a uprobe_multi link with the session flag), here two
 * functions of the test binary, each with its cookie (1 and 2), taking and returning one integer.
 *
 * The entry run logs (cookie, argument), leaves argument + 1 in the session cookie and returns 0
 * for cookie 1 (its return run follows) and 1 for cookie 2 (its return run is skipped). The
 * return run logs (cookie, session cookie - 1, return value): the argument comes from the entry
 * run of the same call. `no_session` counts runs on a kernel without the session kfuncs.
 */
#include <linux/bpf.h>
#include <linux/ptrace.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "session.h"

#define SLOTS 8

__u32 entries = 0;
__u64 entry_cookie[SLOTS] = {};
__u64 entry_arg[SLOTS] = {};
__u32 returns = 0;
__u64 return_cookie[SLOTS] = {};
__u64 return_arg[SLOTS] = {};
__u64 return_value[SLOTS] = {};
__u32 no_session = 0;

SEC("uprobe.session")
int on_call(struct pt_regs *ctx)
{
	__u64 cookie = bpf_get_attach_cookie(ctx);
	__u64 *session_cookie;
	_Bool is_return;
	__u32 i;

	if (session(ctx, &is_return, &session_cookie)) {
		no_session += 1;
		return 1;
	}
	if (!is_return) {
		__u64 arg = PT_REGS_PARM1(ctx);

		*session_cookie = arg + 1;
		i = entries;
		entries = i + 1;
		if (i < SLOTS) {
			entry_cookie[i] = cookie;
			entry_arg[i] = arg;
		}
		return cookie == 1 ? 0 : 1;
	}
	i = returns;
	returns = i + 1;
	if (i < SLOTS) {
		return_cookie[i] = cookie;
#ifdef BPFCONF_MUTANT /* the return stores the session cookie as it is (the +1 the entry added not undone) */
		return_arg[i] = *session_cookie;
#else
		return_arg[i] = *session_cookie - 1;
#endif
		return_value[i] = PT_REGS_RC(ctx);
	}
	return 0;
}

char _license[] SEC("license") = "GPL";
