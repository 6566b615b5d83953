// SPDX-License-Identifier: GPL-2.0
/*
 * struct_ops.bpf.c's TCP congestion control without kfunc calls (which need 5.13): Reno's slow
 * start and additive increase written here, through the struct tcp_sock fields a
 * tcp_congestion_ops program may write (snd_cwnd, snd_cwnd_cnt) since struct_ops came (5.6).
 * Same counters, same init port record and slow start threshold, same record of each cong_avoid
 * call; the harness names it before load.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#define TCP_CA_NAME_MAX 16
#define SLOTS 8
#define CALLS 1024

struct sock_common {
	__u16 skc_num;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct tcp_sock {
	__u32 snd_cwnd;
	__u32 snd_cwnd_cnt;
	__u32 snd_cwnd_clamp;
	__u32 snd_ssthresh;
} __attribute__((preserve_access_index));

struct tcp_congestion_ops {
	__u32 (*ssthresh)(struct sock *sk);
	void (*cong_avoid)(struct sock *sk, __u32 ack, __u32 acked);
	void (*cwnd_event)(struct sock *sk, int ev);
	__u32 (*undo_cwnd)(struct sock *sk);
	void (*init)(struct sock *sk);
	char name[TCP_CA_NAME_MAX];
};

/* One cong_avoid call: the socket, the state found, the acked count, the state left. */
struct ca_call {
	__u16 port;
	__u16 pad;
	__u32 acked;
	__u32 ssthresh;
	__u32 clamp;
	__u32 cwnd_before;
	__u32 cnt_before;
	__u32 cwnd_after;
	__u32 cnt_after;
};

const volatile __u32 init_ssthresh = 0;

__u32 inits = 0;
__u16 init_ports[SLOTS] = {};
/* The calls, the first CALLS of them recorded in `calls`. */
__u64 cong_avoids = 0;
struct ca_call calls[CALLS] = {};
__u64 cwnd_events = 0;
__u64 ssthreshes = 0;
__u64 undos = 0;

SEC("struct_ops")
void BPF_PROG(plain_init, struct sock *sk)
{
	/* The test connects its sockets one after another: no two inits race. */
	__u32 i = inits;

	inits = i + 1;
	if (i < SLOTS)
		init_ports[i] = sk->__sk_common.skc_num;
	((struct tcp_sock *)sk)->snd_ssthresh = init_ssthresh;
}

SEC("struct_ops")
void BPF_PROG(plain_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u32 cwnd = tp->snd_cwnd;
	/* The socket's lock serialises its calls, and the test's sockets send one at a time. */
	__u64 i = cong_avoids;
	struct ca_call *c = 0;

	cong_avoids = i + 1;
	if (i < CALLS) {
		c = &calls[i];
		c->port = sk->__sk_common.skc_num;
		c->acked = acked;
		c->ssthresh = tp->snd_ssthresh;
		c->clamp = tp->snd_cwnd_clamp;
		c->cwnd_before = cwnd;
		c->cnt_before = tp->snd_cwnd_cnt;
	}
	if (cwnd < tp->snd_ssthresh) {
		/* Slow start: one segment per segment acknowledged. */
		cwnd += acked;
		tp->snd_cwnd = cwnd < tp->snd_ssthresh ? cwnd : tp->snd_ssthresh;
	} else {
		/* Congestion avoidance: one segment per window acknowledged. */
		tp->snd_cwnd_cnt += acked;
		if (tp->snd_cwnd_cnt >= cwnd) {
			tp->snd_cwnd_cnt -= cwnd;
			tp->snd_cwnd = cwnd + 1;
		}
	}
	if (c) {
		c->cwnd_after = tp->snd_cwnd;
		c->cnt_after = tp->snd_cwnd_cnt;
	}
}

SEC("struct_ops")
void BPF_PROG(plain_cwnd_event, struct sock *sk, int ev)
{
	__sync_fetch_and_add(&cwnd_events, 1);
}

SEC("struct_ops")
__u32 BPF_PROG(plain_ssthresh, struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
	__u32 half = tp->snd_cwnd >> 1;

	__sync_fetch_and_add(&ssthreshes, 1);
	return half > 2 ? half : 2;
}

SEC("struct_ops")
__u32 BPF_PROG(plain_undo_cwnd, struct sock *sk)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;

	__sync_fetch_and_add(&undos, 1);
	return tp->snd_cwnd;
}

SEC(".struct_ops")
struct tcp_congestion_ops plain_reno = {
	.init = (void *)plain_init,
	.cong_avoid = (void *)plain_cong_avoid,
	.cwnd_event = (void *)plain_cwnd_event,
	.ssthresh = (void *)plain_ssthresh,
	.undo_cwnd = (void *)plain_undo_cwnd,
	.name = "bpfconf_plain",
};

char _license[] SEC("license") = "GPL";
