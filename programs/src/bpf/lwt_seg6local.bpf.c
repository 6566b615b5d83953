// SPDX-License-Identifier: GPL-2.0
/* lwt_seg6local: the program of an SRv6 `End.BPF` endpoint, attached with iproute2 as
 * `ip -6 route add <SID>/128 encap seg6local action End.BPF endpoint pinned <file> dev <dev>`.
 *
 * The kernel runs it for IPv6 packets to the SID that carry a Segment Routing Header (SRH),
 * after doing the End behaviour itself: segments_left is already decremented and the destination
 * address is already the next segment. skb->data starts at the IPv6 header.
 *
 * end_bpf_retag drops packets whose SRH tag is drop_tag (BPF_DROP); on all others it rewrites the
 * SRH tag to new_tag with bpf_lwt_seg6_store_bytes (the only way to write an SRH: the program has
 * no direct packet write access) and returns BPF_OK, so the kernel routes the packet on to its
 * next segment. It reads the packet with bpf_skb_load_bytes, not direct access: BPF_PROG_TEST_RUN
 * does not set up data/data_end for this type, so the same code also runs on crafted packets.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ipv6.h>
#include <linux/seg6.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/* Set by the test before loading. */
const volatile __u16 drop_tag = 0;
const volatile __u16 new_tag = 0;

__u64 seen = 0;
__u64 dropped = 0;
__u64 retagged = 0;
__u64 not_srh = 0;
__u64 store_failed = 0;
/* What the last packet's SRH said when the program ran. */
__u32 last_segments_left = 0;
__u32 last_tag = 0;

/* The IPv6 header and the fixed part of the SRH right after it. */
struct srv6_head {
	struct ipv6hdr ip6;
	struct ipv6_sr_hdr srh;
};

SEC("lwt_seg6local")
int end_bpf_retag(struct __sk_buff *skb)
{
	struct srv6_head head;
	__u16 tag;

	__sync_fetch_and_add(&seen, 1);
	if (bpf_skb_load_bytes(skb, 0, &head, sizeof(head)) ||
	    head.ip6.nexthdr != IPPROTO_ROUTING || head.srh.type != 4) {
		/* End.BPF only runs on packets with an SRH; a crafted packet may have none. */
		__sync_fetch_and_add(&not_srh, 1);
		return BPF_DROP;
	}
	last_segments_left = head.srh.segments_left;
	last_tag = bpf_ntohs(head.srh.tag);
	if (head.srh.tag == bpf_htons(drop_tag)) {
		__sync_fetch_and_add(&dropped, 1);
		return BPF_DROP;
	}
	tag = bpf_htons(new_tag);
#ifdef BPFCONF_MUTANT /* stores the new tag at the SRH's own offset, forgetting the IPv6 header before it */
	if (bpf_lwt_seg6_store_bytes(skb, offsetof(struct ipv6_sr_hdr, tag), &tag, sizeof(tag))) {
#else
	if (bpf_lwt_seg6_store_bytes(skb, sizeof(struct ipv6hdr) + offsetof(struct ipv6_sr_hdr, tag),
				     &tag, sizeof(tag))) {
#endif
		__sync_fetch_and_add(&store_failed, 1);
		return BPF_DROP;
	}
	__sync_fetch_and_add(&retagged, 1);
	return BPF_OK;
}

char LICENSE[] SEC("license") = "GPL";
