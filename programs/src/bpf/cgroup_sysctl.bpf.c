// SPDX-License-Identifier: GPL-2.0
/*
 * cgroup_sysctl: a sysctl filter for the processes of a cgroup v2 child (BPF_CGROUP_SYSCTL).
 *
 * Runs on every read(2) and write(2) of a /proc/sys file by a process in the cgroup. For
 * net/ipv4/ip_default_ttl (a per-network-namespace value): a read is refused (verdict 0: read
 * fails with EPERM) and counted in `reads_denied`; a write has its value replaced by `new_value`
 * (bpf_sysctl_set_new_value, whose return is kept in `set_ret`), the value it carried is kept
 * in `written`, and it is counted in `writes_rewritten`. Every other sysctl passes untouched (1),
 * counted in `others_passed`.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* The sysctl's name relative to /proc/sys, as bpf_sysctl_get_name gives it. */
#define TARGET "net/ipv4/ip_default_ttl"

/* Set by the test before load: what a write inside the cgroup stores instead of its value. */
const volatile char new_value[8] = {};
const volatile __u32 new_value_len = 0;

__u64 reads_denied = 0;
__u64 writes_rewritten = 0;
__u64 others_passed = 0;
/* The value the last rewritten write carried (NUL-terminated). */
char written[8] = {};
/* What bpf_sysctl_set_new_value returned (1 until it is called). */
long set_ret = 1;

static __always_inline int is_target(struct bpf_sysctl *ctx)
{
	static const char target[] = TARGET;
	char name[sizeof(TARGET)] = {};
	int i;

	/* The whole name fits exactly; a longer one gives -E2BIG, a shorter one its length. */
	if (bpf_sysctl_get_name(ctx, name, sizeof(name), 0) != sizeof(TARGET) - 1)
		return 0;
#pragma unroll
	for (i = 0; i < sizeof(TARGET) - 1; i++)
		if (name[i] != target[i])
			return 0;
	return 1;
}

SEC("cgroup/sysctl")
int sysctl_filter(struct bpf_sysctl *ctx)
{
	__u32 len = new_value_len;

	if (!is_target(ctx)) {
		__sync_fetch_and_add(&others_passed, 1);
		return 1;
	}
	if (!ctx->write) {
#ifdef BPFCONF_MUTANT /* counts a read of the target as denied but returns 1 (allow) */
		__sync_fetch_and_add(&reads_denied, 1);
		return 1;
#else
		__sync_fetch_and_add(&reads_denied, 1);
		return 0;
#endif
	}
	bpf_sysctl_get_new_value(ctx, written, sizeof(written));
	if (len == 0 || len > sizeof(new_value))
		return 0;
	set_ret = bpf_sysctl_set_new_value(ctx, (const char *)new_value, len);
	if (set_ret)
		return 0;
	__sync_fetch_and_add(&writes_rewritten, 1);
	return 1;
}

char _license[] SEC("license") = "GPL";
