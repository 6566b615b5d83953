// SPDX-License-Identifier: GPL-2.0
/*
 * A syscall program, run by BPF_PROG_TEST_RUN: it creates a hash map itself (bpf_sys_bpf
 * BPF_MAP_CREATE), stores the key and value the caller passed in its context, and hands the new
 * map's fd back in the context (the kernel copies the context back to the caller). The map's fd
 * lives in the calling process's fd table. Returns 0, or the failed command's negative errno.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct args {
	__u64 key;
	__u64 value;
	__s32 map_fd;
	__s32 pad;
};

static union bpf_attr create_attr = {
	.map_type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u64),
	.value_size = sizeof(__u64),
	.max_entries = 4,
	.map_name = "bpfconf_sys",
};
static union bpf_attr update_attr;
static __u64 key, value;

SEC("syscall")
int create_map(struct args *ctx)
{
	int fd = bpf_sys_bpf(BPF_MAP_CREATE, &create_attr, sizeof(create_attr));

	if (fd < 0)
		return fd;
	ctx->map_fd = fd;
	key = ctx->key;
	value = ctx->value;
	update_attr.map_fd = fd;
#ifdef BPFCONF_MUTANT /* passes the key and value swapped to BPF_MAP_UPDATE_ELEM */
	update_attr.key = (__u64)(long)&value;
	update_attr.value = (__u64)(long)&key;
#else
	update_attr.key = (__u64)(long)&key;
	update_attr.value = (__u64)(long)&value;
#endif
	return bpf_sys_bpf(BPF_MAP_UPDATE_ELEM, &update_attr, sizeof(update_attr));
}

char _license[] SEC("license") = "GPL";
