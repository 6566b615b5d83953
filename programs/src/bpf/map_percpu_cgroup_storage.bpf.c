// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE (4.20): `count` (cgroup_skb egress) counts every packet a
 * socket of the cgroup sends in the running CPU's slot of the storage of the cgroup it runs for.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE);
	__type(key, struct bpf_cgroup_storage_key);
	__type(value, __u64);
} packets SEC(".maps");

SEC("cgroup_skb/egress")
int count(struct __sk_buff *skb)
{
	__u64 *n = bpf_get_local_storage(&packets, 0);

#ifdef BPFCONF_MUTANT /* counts each packet twice */
	*n += 2;
#else
	*n += 1;
#endif
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
