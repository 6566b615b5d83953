// SPDX-License-Identifier: GPL-2.0
/*
 * BPF_MAP_TYPE_INODE_STORAGE (5.10) as BPF LSM programs use it: a counter per inode. On every
 * file open (lsm/file_open) by a task of the test's cgroup (`cgroup_id`), the counter of the
 * file's inode goes up, its element created on demand (BPF_LOCAL_STORAGE_GET_F_CREATE).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct inode;

/* CO-RE: the field's offset comes from the running kernel's BTF. */
struct file {
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct {
	__uint(type, BPF_MAP_TYPE_INODE_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, __u64);
} opens SEC(".maps");

__u64 cgroup_id = 0;
/* Gets with the create flag that answered NULL (the kernel could not create the element then). */
__u64 missed = 0;

SEC("lsm/file_open")
int BPF_PROG(count_open, struct file *file)
{
	__u64 *count;

#ifdef BPFCONF_MUTANT /* the cgroup filter is inverted: counts the opens of every cgroup but the test's */
	if (bpf_get_current_cgroup_id() == cgroup_id)
#else
	if (bpf_get_current_cgroup_id() != cgroup_id)
#endif
		return 0;
	count = bpf_inode_storage_get(&opens, file->f_inode, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (count)
		*count += 1;
	else
		__sync_fetch_and_add(&missed, 1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
