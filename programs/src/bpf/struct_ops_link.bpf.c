// SPDX-License-Identifier: GPL-2.0
/*
 * struct_ops_link: two TCP congestion controls of the same name in struct_ops maps created for
 * links (.struct_ops.link: BPF_F_LINK). A BPF_LINK_CREATE with BPF_STRUCT_OPS on a map (Linux
 * 6.4+) registers it; BPF_LINK_UPDATE swaps the link to the other map (the name must match);
 * dropping the link unregisters it. The harness names both maps before load.
 *
 * Each map's init callback counts the sockets it initialises (first_inits, second_inits); the
 * other callbacks are the minimum a congestion control must have (ssthresh halves the window,
 * undo_cwnd keeps it, cong_avoid leaves it: no data flows in the test).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define TCP_CA_NAME_MAX 16

struct sock;

struct tcp_sock {
	__u32 snd_cwnd;
} __attribute__((preserve_access_index));

struct tcp_congestion_ops {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	__u32 (*undo_cwnd)(struct sock *sk);
	void (*init)(struct sock *sk);
	char name[TCP_CA_NAME_MAX];
};

__u32 first_inits = 0;
__u32 second_inits = 0;

/* The init counter of `map`. */
#ifdef BPFCONF_MUTANT /* every map's init counts into first_inits (the token paste forgotten) */
#define INITS(map) first_inits
#else
#define INITS(map) map##_inits
#endif

/* The callbacks of one map (a program belongs to one struct_ops map). */
#define CONGESTION_CONTROL(map)                                                          \
	SEC("struct_ops")                                                                \
	void BPF_PROG(map##_init, struct sock *sk)                                       \
	{                                                                                \
		__sync_fetch_and_add(&INITS(map), 1);                                    \
	}                                                                                \
	SEC("struct_ops")                                                                \
	void BPF_PROG(map##_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)         \
	{                                                                                \
	}                                                                                \
	SEC("struct_ops")                                                                \
	__u32 BPF_PROG(map##_ssthresh, struct sock *sk)                                  \
	{                                                                                \
		__u32 half = ((struct tcp_sock *)sk)->snd_cwnd >> 1;                     \
		return half > 2 ? half : 2;                                              \
	}                                                                                \
	SEC("struct_ops")                                                                \
	__u32 BPF_PROG(map##_undo_cwnd, struct sock *sk)                                 \
	{                                                                                \
		return ((struct tcp_sock *)sk)->snd_cwnd;                                \
	}                                                                                \
	SEC(".struct_ops.link")                                                          \
	struct tcp_congestion_ops map = {                                                \
		.init = (void *)map##_init,                                              \
		.cong_avoid = (void *)map##_cong_avoid,                                  \
		.ssthresh = (void *)map##_ssthresh,                                      \
		.undo_cwnd = (void *)map##_undo_cwnd,                                    \
		.name = "bpfconf_link",                                                  \
	};

CONGESTION_CONTROL(first)
CONGESTION_CONTROL(second)

char _license[] SEC("license") = "GPL";
