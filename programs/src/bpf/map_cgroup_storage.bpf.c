// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_CGROUP_STORAGE (4.19) as cgroup programs use it: `count` (cgroup_skb egress) adds
 * every packet a socket of the cgroup sends to the storage of the cgroup it runs for
 * (bpf_get_local_storage): one element per (cgroup, attach type) the program is attached to.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct traffic {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_STORAGE);
	__type(key, struct bpf_cgroup_storage_key);
	__type(value, struct traffic);
} traffic SEC(".maps");

SEC("cgroup_skb/egress")
int count(struct __sk_buff *skb)
{
	struct traffic *t = bpf_get_local_storage(&traffic, 0);

#ifdef BPFCONF_MUTANT /* adds the length to packets and 1 to bytes (the fields swapped) */
	__sync_fetch_and_add(&t->packets, skb->len);
	__sync_fetch_and_add(&t->bytes, 1);
#else
	__sync_fetch_and_add(&t->packets, 1);
	__sync_fetch_and_add(&t->bytes, skb->len);
#endif
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
