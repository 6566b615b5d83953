// SPDX-License-Identifier: GPL-2.0
/* A user object whose second program calls bpf_loop (Linux 5.17+): refused on 5.10, loaded from
 * 6.1 on; its first program loads everywhere. `bpfconf objects`'s example. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

static long add_one(__u32 index, void *ctx)
{
	*(__u64 *)ctx += 1;
	return 0;
}

SEC("tc")
int loop_ten_times(struct __sk_buff *skb)
{
	__u64 n = 0;

	bpf_loop(10, add_one, &n, 0);
	return n == 10 ? 0 : 2;
}

SEC("tc")
int pass_all(struct __sk_buff *skb)
{
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
