/* bench_proc.h - the benchmark's child processes: spawning, stopping, and what /proc says
 * about them (resident memory, CPU time). Children die with the benchmark (PDEATHSIG). */
#ifndef SAGA_BENCH_PROC_H
#define SAGA_BENCH_PROC_H

#include <stdint.h>
#include <sys/types.h>

/* Starts argv[0] with argv, stdout and stderr appended to log_path (NULL = inherit).
 * Returns the pid, or -1. */
pid_t proc_spawn(char *const argv[], const char *log_path);

/* SIGTERM, then SIGKILL after grace_ms if it is still there; reaps it. Accepts pid <= 0. */
void proc_stop(pid_t pid, int grace_ms);

/* Waits up to timeout_ms for pid to exit and reaps it. Returns its exit code (0..255; 128
 * + the signal when a signal ended it), or -1 when it did not end in time (it is then
 * stopped with proc_stop). */
int proc_wait(pid_t pid, int timeout_ms);

/* True while pid runs (not exited, not a zombie we reaped). */
int proc_alive(pid_t pid);

/* VmRSS of pid in KiB, or -1. */
long proc_rss_kib(pid_t pid);

/* utime + stime of pid in seconds, or -1. */
double proc_cpu_seconds(pid_t pid);

/* A TCP port free on 127.0.0.1 right now (the kernel's pick), or -1. */
int proc_free_port(void);

/* Monotonic and wall clocks in microseconds. */
int64_t now_us(void);

#endif
