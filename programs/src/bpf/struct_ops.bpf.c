// SPDX-License-Identifier: GPL-2.0
/*
 * A TCP congestion control written in BPF (a struct_ops map of struct tcp_congestion_ops): Reno
 * built from the kernel's kfuncs tcp_slow_start and tcp_cong_avoid_ai (cwnd grows only through
 * them), tcp_reno_ssthresh and tcp_reno_undo_cwnd. The harness writes a name unique to its
 * process into the map before load. Each callback counts its calls; init also records the local
 * port of each socket it initialises, so the test can match calls to the sockets it opened, and
 * sets the socket's slow start threshold to `init_ssthresh` (set before load): a lossless loopback
 * never lowers it from "infinite", and so would never leave slow start. Each cong_avoid call is
 * recorded whole in `calls` (the state it found, what it was told, the state it left), for the
 * test to check against the kfuncs' rules.
 *
 * libbpf matches the members of the local struct tcp_congestion_ops to the kernel's by name;
 * the kernel hands the callbacks a struct tcp_sock (it promotes the struct sock argument), whose
 * fields are read through CO-RE.
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

extern __u32 tcp_slow_start(struct tcp_sock *tp, __u32 acked) __ksym;
extern void tcp_cong_avoid_ai(struct tcp_sock *tp, __u32 w, __u32 acked) __ksym;
extern __u32 tcp_reno_ssthresh(struct sock *sk) __ksym;
extern __u32 tcp_reno_undo_cwnd(struct sock *sk) __ksym;

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
void BPF_PROG(bpfconf_init, struct sock *sk)
{
	/* The test connects its sockets one after another: no two inits race. */
	__u32 i = inits;

	inits = i + 1;
	if (i < SLOTS)
		init_ports[i] = sk->__sk_common.skc_num;
	((struct tcp_sock *)sk)->snd_ssthresh = init_ssthresh;
}

SEC("struct_ops")
void BPF_PROG(bpfconf_cong_avoid, struct sock *sk, __u32 ack, __u32 acked)
{
	struct tcp_sock *tp = (struct tcp_sock *)sk;
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
		c->cwnd_before = tp->snd_cwnd;
		c->cnt_before = tp->snd_cwnd_cnt;
	}
	if (tp->snd_cwnd < tp->snd_ssthresh) {
		acked = tcp_slow_start(tp, acked);
		if (!acked)
			goto out;
	}
#ifdef BPFCONF_MUTANT /* grows the window four times slower in congestion avoidance (w = 4 * snd_cwnd) */
	tcp_cong_avoid_ai(tp, tp->snd_cwnd * 4, acked);
#else
	tcp_cong_avoid_ai(tp, tp->snd_cwnd, acked);
#endif
out:
	if (c) {
		c->cwnd_after = tp->snd_cwnd;
		c->cnt_after = tp->snd_cwnd_cnt;
	}
}

SEC("struct_ops")
void BPF_PROG(bpfconf_cwnd_event, struct sock *sk, int ev)
{
	__sync_fetch_and_add(&cwnd_events, 1);
}

SEC("struct_ops")
__u32 BPF_PROG(bpfconf_ssthresh, struct sock *sk)
{
	__sync_fetch_and_add(&ssthreshes, 1);
	return tcp_reno_ssthresh(sk);
}

SEC("struct_ops")
__u32 BPF_PROG(bpfconf_undo_cwnd, struct sock *sk)
{
	__sync_fetch_and_add(&undos, 1);
	return tcp_reno_undo_cwnd(sk);
}

SEC(".struct_ops")
struct tcp_congestion_ops bpfconf_reno = {
	.init = (void *)bpfconf_init,
	.cong_avoid = (void *)bpfconf_cong_avoid,
	.cwnd_event = (void *)bpfconf_cwnd_event,
	.ssthresh = (void *)bpfconf_ssthresh,
	.undo_cwnd = (void *)bpfconf_undo_cwnd,
	.name = "bpfconf_reno",
};

char _license[] SEC("license") = "GPL";
