// SPDX-License-Identifier: GPL-2.0
/*
 * bpf_find_vma (5.17) from a raw tracepoint program run by BPF_PROG_TEST_RUN, which runs in the
 * calling thread: finds, in the current task (bpf_get_current_task_btf), the mapping holding the
 * address in the context's first argument, and stores its bounds and its file's name. The kernel
 * structures are declared with only the fields read; CO-RE places them.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define NAME_LEN 64

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct dentry {
	struct qstr d_name;
} __attribute__((preserve_access_index));

struct path {
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
} __attribute__((preserve_access_index));

struct vm_area_struct {
	unsigned long vm_start;
	unsigned long vm_end;
	struct file *vm_file;
} __attribute__((preserve_access_index));

struct found {
	__u64 vm_start;
	__u64 vm_end;
	__u32 calls;
	char name[NAME_LEN];
};

struct found found = {};
long ret = 0;

static long on_vma(struct task_struct *task, struct vm_area_struct *vma, struct found *f)
{
	const unsigned char *name = BPF_CORE_READ(vma, vm_file, f_path.dentry, d_name.name);

	f->vm_start = BPF_CORE_READ(vma, vm_start);
	f->vm_end = BPF_CORE_READ(vma, vm_end);
	f->calls++;
	bpf_probe_read_kernel_str(f->name, sizeof(f->name), name);
	return 0;
}

SEC("raw_tp")
int find(__u64 *ctx)
{
	struct found f = {};

	ret = bpf_find_vma(bpf_get_current_task_btf(), ctx[0], on_vma, &f, 0);
	found = f;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
