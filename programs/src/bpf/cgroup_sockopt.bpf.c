// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup_sockopt: setsockopt(2)/getsockopt(2) filters for the sockets of a cgroup v2 child
 * (BPF_CGROUP_SETSOCKOPT, BPF_CGROUP_GETSOCKOPT).
 *
 * - deny_ttl (setsockopt): setting IP_TTL is refused (verdict 0: the call fails with EPERM) and
 *   counted in `sets_denied`; every other option goes on to the kernel's own handling with its
 *   value untouched (1, optlen untouched), counted in `sets_passed`.
 * - report_ttl (getsockopt, run after the kernel's own handling): the IP_TTL the kernel reported
 *   is replaced by `reported_ttl` (a 4-byte int, optlen 4, retval 0), counted in
 *   `gets_rewritten`; every other option keeps the kernel's answer (1), counted in `gets_passed`.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

#define SOL_IP 0

/* Set by the test before load. */
const volatile __s32 reported_ttl = 0;

__u64 sets_denied = 0;
__u64 sets_passed = 0;
__u64 gets_rewritten = 0;
__u64 gets_passed = 0;

SEC("cgroup/setsockopt")
int deny_ttl(struct bpf_sockopt *ctx)
{
	if (ctx->level == SOL_IP && ctx->optname == IP_TTL) {
		__sync_fetch_and_add(&sets_denied, 1);
		return 0;
	}
	__sync_fetch_and_add(&sets_passed, 1);
	return 1;
}

SEC("cgroup/getsockopt")
int report_ttl(struct bpf_sockopt *ctx)
{
	void *optval = ctx->optval;
	void *optval_end = ctx->optval_end;

	if (ctx->level == SOL_IP && ctx->optname == IP_TTL &&
	    optval + sizeof(__s32) <= optval_end) {
		*(__s32 *)optval = reported_ttl;
		ctx->optlen = sizeof(__s32);
		/* Two 4-byte stores: the context takes no 8-byte store over both fields. */
		asm volatile("" ::: "memory");
		ctx->retval = 0;
#ifdef BPFCONF_MUTANT /* returns 0 after rewriting the value (0 fails the getsockopt with EPERM) */
		__sync_fetch_and_add(&gets_rewritten, 1);
		return 0;
#else
		__sync_fetch_and_add(&gets_rewritten, 1);
		return 1;
#endif
	}
	__sync_fetch_and_add(&gets_passed, 1);
	return 1;
}

char _license[] SEC("license") = "GPL";
