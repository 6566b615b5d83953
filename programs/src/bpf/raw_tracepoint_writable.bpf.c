// SPDX-License-Identifier: GPL-2.0
/*
 * raw_tracepoint_writable: a program on the kernel's writable tracepoint bpf_test_finish
 * (bpf_test_run/bpf_test_finish, net/bpf/test_run.c), which every BPF_PROG_TEST_RUN of a socket
 * filter, tc or XDP program passes with a pointer to the run's result (`int *err`, the
 * tracepoint's writable buffer of sizeof(int)). For the thread `target_pid_tgid` (set before
 * load: other threads' test runs are left alone) it writes `err_to_write` there, so that test run
 * returns it, and counts the writes in `writes`.
 *
 * `test_run_target` is the socket filter whose test run the test makes: it returns 7.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u64 target_pid_tgid = 0;
const volatile int err_to_write = 0;

__u64 writes = 0;

SEC("raw_tp.w/bpf_test_finish")
int set_test_run_result(struct bpf_raw_tracepoint_args *ctx)
{
	int *err = (int *)ctx->args[0];

	if (bpf_get_current_pid_tgid() != target_pid_tgid)
		return 0;
#ifdef BPFCONF_MUTANT /* writes the error with its sign flipped */
	*err = -err_to_write;
#else
	*err = err_to_write;
#endif
	__sync_fetch_and_add(&writes, 1);
	return 0;
}

SEC("socket")
int test_run_target(struct __sk_buff *skb)
{
	return 7;
}

char _license[] SEC("license") = "GPL";
