#define _GNU_SOURCE
#include "sluice_crash_record.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

__thread const char *sluice_crash_current_step;

static int crash_fd = -1;

static const int fatal_signals[] = { SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT };

/* Appends `text` to buffer[*used...capacity-1]; async-signal-safe (no libc formatting). */
static void append(char *buffer, size_t capacity, size_t *used, const char *text) {
    while (*text && *used + 1 < capacity) buffer[(*used)++] = *text++;
}

static void append_number(char *buffer, size_t capacity, size_t *used, int value) {
    char digits[16];
    int count = 0;
    unsigned int v = value < 0 ? 0u : (unsigned int)value;
    do { digits[count++] = (char)('0' + v % 10); v /= 10; } while (v && count < 15);
    while (count > 0 && *used + 1 < capacity) buffer[(*used)++] = digits[--count];
}

static void on_fatal_signal(int signal_number, siginfo_t *info, void *context) {
    (void)info;
    (void)context;
    int saved_errno = errno;
    if (crash_fd >= 0) {
        char line[1024];
        size_t used = 0;
        append(line, sizeof line, &used, "crash signal=");
        append_number(line, sizeof line, &used, signal_number);
        const char *step = sluice_crash_current_step;
        append(line, sizeof line, &used, step ? " " : " host");
        if (step) append(line, sizeof line, &used, step);
        line[used++] = '\n';
        ssize_t ignored = write(crash_fd, line, used);
        (void)ignored;
    }
    errno = saved_errno;
    /* SA_RESETHAND restored the default action: raising again (SA_NODEFER lets it through at once)
     * kills the process with this very signal, whether it came from a fault or from raise/abort. */
    raise(signal_number);
}

int sluice_crash_handler_install(int fd) {
    crash_fd = fd;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fatal_signal;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESETHAND | SA_NODEFER;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++) {
        if (sigaction(fatal_signals[i], &action, NULL) != 0) return -1;
    }
    return sluice_crash_altstack_install();
}

int sluice_crash_altstack_install(void) {
    size_t size = 64 * 1024;
    stack_t stack;
    memset(&stack, 0, sizeof stack);
    stack.ss_sp = malloc(size);
    if (!stack.ss_sp) return -1;
    stack.ss_size = size;
    stack.ss_flags = 0;
    return sigaltstack(&stack, NULL);
}

int sluice_crash_die_with_parent(int signal_number) {
#ifdef __linux__
    pid_t parent = getppid();
    if (prctl(PR_SET_PDEATHSIG, signal_number) != 0) return -1;
    if (getppid() != parent || parent == 1) return -1;
    return 0;
#else
    (void)signal_number;
    return -1;
#endif
}
