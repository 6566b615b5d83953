// SPDX-License-Identifier: GPL-2.0
/*
 * BPF iterators, read through an iterator fd (bpf_iter_create): a task iterator prints
 * "tgid tid comm" for every thread of one process (chosen before load), and a map-element
 * iterator prints "key value" for every entry of `entries`. The kernel types are declared here
 * with only the fields used, relocated against the kernel's BTF (CO-RE).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct seq_file;

struct bpf_iter_meta {
	struct seq_file *seq;
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	char comm[16];
} __attribute__((preserve_access_index));

struct bpf_iter__task {
	struct bpf_iter_meta *meta;
	struct task_struct *task;
} __attribute__((preserve_access_index));

struct bpf_iter__bpf_map_elem {
	struct bpf_iter_meta *meta;
	void *key;
	void *value;
} __attribute__((preserve_access_index));

const volatile int target_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} entries SEC(".maps");

SEC("iter/task")
int list_threads(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;

#ifdef BPFCONF_MUTANT /* lists the tasks whose pid (not tgid) is the target's: only its main thread */
	if (!task || task->pid != target_tgid)
#else
	if (!task || task->tgid != target_tgid)
#endif
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%d %d %s\n", task->tgid, task->pid, task->comm);
	return 0;
}

SEC("iter/bpf_map_elem")
int dump_entries(struct bpf_iter__bpf_map_elem *ctx)
{
	__u32 *key = ctx->key;
	__u64 *value = ctx->value;

	if (!key || !value)
		return 0;
	BPF_SEQ_PRINTF(ctx->meta->seq, "%u %llu\n", *key, *value);
	return 0;
}

char _license[] SEC("license") = "GPL";
