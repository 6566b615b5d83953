// SPDX-License-Identifier: GPL-2.0
/*
 * A tracepoint program reading its typed context: syscalls/sys_enter_execve, whose layout is the
 * tracepoint's format file (events/syscalls/sys_enter_execve/format). Emits {pid, filename} of
 * every execve to a ring buffer.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define FILENAME_LEN 128

/* events/syscalls/sys_enter_execve/format */
struct sys_enter_execve_args {
	__u64 common;		/* common_type, common_flags, common_preempt_count, common_pid */
	__s32 syscall_nr;
	__u32 pad;
	const char *filename;
	const char *const *argv;
	const char *const *envp;
};

struct exec_event {
	__u32 pid;
	__u32 pad;
	char filename[FILENAME_LEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_execve")
int on_execve(struct sys_enter_execve_args *args)
{
	struct exec_event *ev = bpf_ringbuf_reserve(&events, sizeof(*ev), 0);

	if (!ev)
		return 0;
	ev->pid = bpf_get_current_pid_tgid() >> 32;
	ev->pad = 0;
#ifdef BPFCONF_MUTANT /* reads the string at args->argv (the wrong field of the format) instead of args->filename */
	bpf_probe_read_user_str(ev->filename, sizeof(ev->filename), args->argv);
#else
	bpf_probe_read_user_str(ev->filename, sizeof(ev->filename), args->filename);
#endif
	bpf_ringbuf_submit(ev, 0);
	return 0;
}

char _license[] SEC("license") = "GPL";
