/* The worker's record of what it is running, for the crash handler (docs/operations.md,
 * "Supervision"). Host-internal: not part of the plugin ABI.
 *
 * Before each call into a plugin hook the chain runtime stores a pointer to that step's label (a
 * preformatted, NUL-terminated string that lives as long as the runtime plan: never freed while a
 * worker runs) in a thread-local variable, and restores the previous value after it: one TLS load
 * and two TLS stores per hook, no locks, no allocation. When the worker dies of a fatal signal the
 * handler installed by sluice_crash_handler_install writes "crash signal=N <label>\n" to the
 * supervisor's pipe with write(2) (async-signal-safe only) and lets the signal kill the process,
 * so waitpid in the supervisor still reports the signal. */
#ifndef SLUICE_CRASH_RECORD_H
#define SLUICE_CRASH_RECORD_H

#ifdef __cplusplus
extern "C" {
#endif

/* The label of the plugin hook running on this thread, or NULL when the host runs its own code. */
extern __thread const char *sluice_crash_current_step;

/* Marks `label` as the running step; returns the previous one for sluice_crash_step_leave (hooks
 * nest: a plugin's call_forward may run the next step's hook synchronously). */
static inline const char *sluice_crash_step_enter(const char *label) {
    const char *previous = sluice_crash_current_step;
    sluice_crash_current_step = label;
    return previous;
}

/* Restores the step that was running before the matching sluice_crash_step_enter. */
static inline void sluice_crash_step_leave(const char *previous) {
    sluice_crash_current_step = previous;
}

/* Installs the fatal-signal handler (SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT) for the
 * whole process: on such a signal it writes one line to `fd` and dies of the same signal. Call once,
 * from the main thread, before serving. Returns 0, or -1 with errno set. */
int sluice_crash_handler_install(int fd);

/* Gives the calling thread an alternate signal stack, so the handler can run even when a plugin
 * overflowed the thread's stack. Call on every thread that runs plugin hooks (each event loop).
 * The stack is leaked on purpose (threads live as long as the worker). Returns 0, or -1. */
int sluice_crash_altstack_install(void);

/* Linux: the calling process gets `signal_number` when its parent (the supervisor) dies, so no
 * orphaned worker keeps the ports. Returns 0, or -1 (elsewhere, or if the parent is gone already). */
int sluice_crash_die_with_parent(int signal_number);

#ifdef __cplusplus
}
#endif

#endif
