// SPDX-License-Identifier: GPL-2.0
/*
 * fmod_ret on security_socket_create: a non-zero return replaces the function's own, so the
 * socket(2) caller gets it. The verifier lets fmod_ret attach to security_* functions without
 * CONFIG_FUNCTION_ERROR_INJECTION (check_attach_modify_return). Only the thread and the
 * (family, type) chosen before load are refused, with -EPERM; every other call is left alone.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define EPERM 1

const volatile __u32 target_tid = 0;
const volatile int target_family = 0;
const volatile int target_type = 0;

__u32 seen = 0;
__u32 denied = 0;

SEC("fmod_ret/security_socket_create")
int BPF_PROG(deny_socket, int family, int type, int protocol, int kern, int ret)
{
	if (ret || (__u32)bpf_get_current_pid_tgid() != target_tid)
		return ret;
	seen += 1;
#ifdef BPFCONF_MUTANT /* refuses a socket that matches the family OR the type (&& for ||: a De Morgan slip) */
	if (family != target_family && type != target_type)
#else
	if (family != target_family || type != target_type)
#endif
		return 0;
	denied += 1;
	return -EPERM;
}

char _license[] SEC("license") = "GPL";
