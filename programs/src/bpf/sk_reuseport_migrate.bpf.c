// SPDX-License-Identifier: GPL-2.0
/*
 * sk_reuseport_migrate: a SO_REUSEPORT group's program loaded for
 * BPF_SK_REUSEPORT_SELECT_OR_MIGRATE (Linux 5.14+). It runs for each SYN (migrating_sk NULL) and,
 * when a listener of the group closes, once for each request in that listener's accept queue
 * (migrating_sk: the request's socket), picking the listener the request moves to.
 *
 * The listeners are in `listeners` (a REUSEPORT_SOCKARRAY). Every SYN goes to key 0 (counted in
 * `syn_selected`). A migrating request goes to key `migrate_key` (`migrated`), except the one
 * whose client port is `drop_client_port`: SK_DROP (`migrate_dropped`), so it is reset. The state
 * of the last migrating socket is kept in `migrating_state`.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u64);
} listeners SEC(".maps");

/* Set by the test before load (host order). */
const volatile __u32 migrate_key = 0;
const volatile __u16 drop_client_port = 0;

__u64 syn_selected = 0;
__u64 migrated = 0;
__u64 migrate_dropped = 0;
__u64 select_errors = 0;
__u32 migrating_state = 0;

SEC("sk_reuseport/migrate")
int select_or_migrate(struct sk_reuseport_md *md)
{
	struct bpf_sock *migrating = md->migrating_sk;
	__u32 key = 0;

	if (!migrating) {
		if (bpf_sk_select_reuseport(md, &listeners, &key, 0)) {
			__sync_fetch_and_add(&select_errors, 1);
			return SK_DROP;
		}
		__sync_fetch_and_add(&syn_selected, 1);
		return SK_PASS;
	}
	migrating_state = migrating->state;
	/* dst_port: the peer's (client's) port, network order in the low 16 bits. */
#ifdef BPFCONF_MUTANT /* compares the client's port in host order (bpf_htons forgotten) */
	if ((__u16)migrating->dst_port == drop_client_port) {
#else
	if ((__u16)migrating->dst_port == bpf_htons(drop_client_port)) {
#endif
		__sync_fetch_and_add(&migrate_dropped, 1);
		return SK_DROP;
	}
	key = migrate_key;
	if (bpf_sk_select_reuseport(md, &listeners, &key, 0)) {
		__sync_fetch_and_add(&select_errors, 1);
		return SK_DROP;
	}
	__sync_fetch_and_add(&migrated, 1);
	return SK_PASS;
}

char _license[] SEC("license") = "GPL";
