// SPDX-License-Identifier: GPL-2.0
/*
 * sock_ops: TCP events of the sockets of a cgroup v2 child (BPF_CGROUP_SOCK_OPS).
 *
 * Counts the established callbacks: BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB (the connecting side,
 * when the SYN-ACK completes its handshake) in `active_established` and
 * BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB (the accepted side, on the final ACK) in
 * `passive_established`. On both it sets, with bpf_setsockopt (options every kernel since 5.10
 * takes there):
 *   - SO_KEEPALIVE = 1,
 *   - TCP_KEEPIDLE = `keepidle` seconds,
 *   - TCP_BPF_RTO_MIN = `rto_min_us` microseconds (the floor of the retransmission timeout, which
 *     is otherwise 200 ms),
 * and keeps the last return value of each call (0, or a negative errno) for the test to check.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>

/* The kernel's <linux/socket.h> and <asm-generic/socket.h> values (not in the UAPI headers). */
#define SOL_SOCKET 1
#define SO_KEEPALIVE 9
#define SOL_TCP 6

/* Set by the test before load. */
const volatile int keepidle = 0;
const volatile int rto_min_us = 0;

__u64 active_established = 0;
__u64 passive_established = 0;
int keepalive_rc = 1;
int keepidle_rc = 1;
int rto_min_rc = 1;

static __always_inline void set_options(struct bpf_sock_ops *skops)
{
	int one = 1;
	int idle = keepidle;
	int rto = rto_min_us;

	keepalive_rc = bpf_setsockopt(skops, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	keepidle_rc = bpf_setsockopt(skops, SOL_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
	rto_min_rc = bpf_setsockopt(skops, SOL_TCP, TCP_BPF_RTO_MIN, &rto, sizeof(rto));
}

SEC("sockops")
int count_established(struct bpf_sock_ops *skops)
{
	switch (skops->op) {
	case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
		__sync_fetch_and_add(&active_established, 1);
		set_options(skops);
		break;
	case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
#ifdef BPFCONF_MUTANT /* a passive establishment is counted as an active one (a copy-paste slip) */
		__sync_fetch_and_add(&active_established, 1);
#else
		__sync_fetch_and_add(&passive_established, 1);
#endif
		set_options(skops);
		break;
	}
	return 1;
}

char _license[] SEC("license") = "GPL";
