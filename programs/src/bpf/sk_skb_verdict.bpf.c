// SPDX-License-Identifier: GPL-2.0
/*
 * sk_skb_verdict: an skb verdict without a stream parser (BPF_SK_SKB_VERDICT, attached to
 * `sock_map`).
 *
 * Every TCP socket in `sock_map` hands each skb it receives to skb_verdict, whole (no parser cuts
 * the stream into messages), instead of its receive queue. The verdict redirects every skb to the
 * socket at key 1 (bpf_sk_redirect_map with `redirect_flags`): out through that socket when the
 * flags are 0, into its receive queue with BPF_F_INGRESS. `verdicts` and `redirected_bytes` count
 * the skbs and their bytes.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

/* Set by the test before loading: 0 (egress) or BPF_F_INGRESS. */
const volatile __u64 redirect_flags = 0;

struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} sock_map SEC(".maps");

__u64 verdicts = 0;
__u64 redirected_bytes = 0;

SEC("sk_skb/verdict")
int skb_verdict(struct __sk_buff *skb)
{
	__sync_fetch_and_add(&verdicts, 1);
	__sync_fetch_and_add(&redirected_bytes, skb->len);
#ifdef BPFCONF_MUTANT /* ignores redirect_flags (always redirects to the egress side) */
	return bpf_sk_redirect_map(skb, &sock_map, 1, 0);
#else
	return bpf_sk_redirect_map(skb, &sock_map, 1, redirect_flags);
#endif
}

char _license[] SEC("license") = "GPL";
