// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_RHASH (7.2+) as programs use it: a table sized by what it holds (it grows and
 * shrinks; BPF_F_NO_PREALLOC is required), here counters by key, plus the map's operations on the
 * program side. Syscall programs run with BPF_PROG_TEST_RUN, the request in their context:
 * `count` counts one event for `key`; `op` carries out `op` (OP_UPDATE, OP_DELETE, OP_LOOKUP) on
 * `key` (an update stores `value` with `flags`) and returns the helper's answer (0 or -errno),
 * a found value in `looked_up` (the protocol of map_op.h, in a context instead of arguments).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <linux/errno.h>

/* 7.2's UAPI; Debian's multiarch headers are 6.1's. */
#define BPF_MAP_TYPE_RHASH 35

#define OP_UPDATE 1
#define OP_DELETE 2
#define OP_LOOKUP 3

struct {
	__uint(type, BPF_MAP_TYPE_RHASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} table SEC(".maps");

struct request {
	__u64 op;
	__u64 key;
	__u64 value;
	__u64 flags;
};

__u64 looked_up;

SEC("syscall")
int count(struct request *req)
{
	__u32 key = req->key;
	__u64 one = 1, *hits = bpf_map_lookup_elem(&table, &key);
	int err;

#ifdef BPFCONF_MUTANT /* a key's hit is counted twice when it already exists */
	if (hits) {
		__sync_fetch_and_add(hits, 2);
		return 0;
	}
	err = bpf_map_update_elem(&table, &key, &one, BPF_NOEXIST);
#else
	if (hits) {
		__sync_fetch_and_add(hits, 1);
		return 0;
	}
	err = bpf_map_update_elem(&table, &key, &one, BPF_NOEXIST);
#endif
	if (err != -EEXIST)
		return err;
	hits = bpf_map_lookup_elem(&table, &key);
	if (hits)
		__sync_fetch_and_add(hits, 1);
	return 0;
}

SEC("syscall")
int op(struct request *req)
{
	__u32 key = req->key;
	__u64 value = req->value, *found;

	switch (req->op) {
	case OP_UPDATE:
		return bpf_map_update_elem(&table, &key, &value, req->flags);
	case OP_DELETE:
		return bpf_map_delete_elem(&table, &key);
	case OP_LOOKUP:
		found = bpf_map_lookup_elem(&table, &key);
		if (!found)
			return -ENOENT;
		looked_up = *found;
		return 0;
	}
	return -EINVAL;
}

char _license[] SEC("license") = "GPL";
