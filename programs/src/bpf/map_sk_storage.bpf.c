// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_SK_STORAGE (5.2) as cgroup programs use it: a counter per socket. `count`
 * (cgroup_skb egress) adds every packet a socket of the cgroup sends to the socket's own counter,
 * its element created on demand (BPF_LOCAL_STORAGE_GET_F_CREATE).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} packets SEC(".maps");

/* Gets with the create flag that answered NULL (the kernel could not create the element then). */
__u64 missed = 0;

SEC("cgroup_skb/egress")
int count(struct __sk_buff *skb)
{
	struct bpf_sock *sk = skb->sk;
	__u64 *n;

	if (!sk)
		return 1;
	sk = bpf_sk_fullsock(sk);
	if (!sk)
		return 1;
#ifdef BPFCONF_MUTANT /* gets the storage without BPF_LOCAL_STORAGE_GET_F_CREATE (nothing is ever counted) */
	n = bpf_sk_storage_get(&packets, sk, 0, 0);
#else
	n = bpf_sk_storage_get(&packets, sk, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
#endif
	if (n)
		*n += 1;
	else
		__sync_fetch_and_add(&missed, 1);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
