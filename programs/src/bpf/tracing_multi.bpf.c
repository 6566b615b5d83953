// SPDX-License-Identifier: GPL-2.0
/*
 * tracing_multi: trampoline programs put on many kernel functions by one link (Linux 7.2+:
 * BPF_TRACE_FENTRY_MULTI, BPF_TRACE_FEXIT_MULTI, BPF_TRACE_FSESSION_MULTI), loaded without an
 * attach target: they read arguments and return values through bpf_get_func_arg and
 * bpf_get_func_ret, and tell the functions apart by the cookie the link gave each. Here the
 * entry functions of getpgid and getsid, whose one argument is the syscall's struct pt_regs *.
 * (libbpf 1.7 knows none of these sections: the test sets each program's type and attach type
 * before load and makes the link itself, harness::tracing_multi.)
 *
 * For one thread, chosen before load, each program logs (cookie, pid argument[, return value]):
 * on_entry at every entry, on_exit at every exit, on_session at both, its exit run taking the
 * pid from the session cookie its entry run left (pid + 1).
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
__u64 entry_cookie[SLOTS] = {};
__u64 entry_pid[SLOTS] = {};
__u32 exits = 0;
__u64 exit_cookie[SLOTS] = {};
__u64 exit_pid[SLOTS] = {};
__s64 exit_ret[SLOTS] = {};
__u32 no_session = 0;

/* The pid argument of the syscall whose pt_regs * is argument 0. */
static __always_inline __u64 syscall_pid(void *ctx)
{
	__u64 regs = 0, pid = 0;

	bpf_get_func_arg(ctx, 0, &regs);
	bpf_probe_read_kernel(&pid, sizeof(pid), &PT_REGS_PARM1((struct pt_regs *)regs));
	return pid;
}

static __always_inline void log_entry(void *ctx, __u64 pid)
{
	__u32 i = entries;

	entries = i + 1;
	if (i < SLOTS) {
		entry_cookie[i] = bpf_get_attach_cookie(ctx);
		entry_pid[i] = pid;
	}
}

static __always_inline void log_exit(void *ctx, __u64 pid)
{
	__u64 ret = 0;
	__u32 i = exits;

#ifdef BPFCONF_MUTANT /* the exit logs the second argument (bpf_get_func_arg(ctx, 1)) as the return value instead of bpf_get_func_ret */
	bpf_get_func_arg(ctx, 1, &ret);
#else
	bpf_get_func_ret(ctx, &ret);
#endif
	exits = i + 1;
	if (i < SLOTS) {
		exit_cookie[i] = bpf_get_attach_cookie(ctx);
		exit_pid[i] = pid;
		exit_ret[i] = ret;
	}
}

static __always_inline int ours(void)
{
	return (__u32)bpf_get_current_pid_tgid() == target_tid;
}

SEC("fentry.multi")
int on_entry(void *ctx)
{
	if (ours())
		log_entry(ctx, syscall_pid(ctx));
	return 0;
}

SEC("fexit.multi")
int on_exit(void *ctx)
{
	if (ours())
		log_exit(ctx, syscall_pid(ctx));
	return 0;
}

SEC("fsession.multi")
int on_session(void *ctx)
{
	__u64 *cookie;
	__u64 pid;

	if (!ours())
		return 0;
	if (!bpf_ksym_exists(bpf_session_is_return) || !bpf_ksym_exists(bpf_session_cookie)) {
		no_session += 1;
		return 0;
	}
	cookie = bpf_session_cookie(ctx);
	if (!bpf_session_is_return(ctx)) {
		pid = syscall_pid(ctx);
		*cookie = pid + 1;
		log_entry(ctx, pid);
	} else {
		log_exit(ctx, *cookie - 1);
	}
	return 0;
}

char _license[] SEC("license") = "GPL";
