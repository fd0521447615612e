/*
 * berth's exec stub: the program a container's process is exec'd through.
 *
 * Until its last execve, the process that becomes a container's is a copy
 * of the host's runtime binary (berth-runc or berth): /proc/self/exe is that
 * file. Anything the kernel resolves during that execve as /proc/self/exe (a
 * `#!/proc/self/exe` script's interpreter, an ELF's PT_INTERP, argv[0])
 * would be the writable host binary (CVE-2019-5736 class). So the runtime
 * first execs this stub from a sealed memfd, and the stub execs the real
 * program: while the container's program is being loaded, /proc/self/exe is
 * the sealed memfd, never a host file.
 *
 * argv: "berth-exec", REPORT, PROGRAM, ARGV0, ARGV1, ...
 * REPORT is "-" (an exec failure is described on stderr), the number of
 * an fd to report the failure to as 'X' and errno (4 bytes, little endian),
 * or "c" and the number of an fd to hold until the exec (the failure is
 * described on stderr). A numbered fd is made close-on-exec first, so it
 * closes when the exec works: its other end learns the program is
 * executed.
 * Run as anything else (an interpreter named by a script or an ELF inside
 * the container), it refuses.
 *
 * No libc: raw syscalls, a static non-PIE executable of a few KB.
 */

#if defined(__x86_64__)
#define NR_WRITE 1
#define NR_FCNTL 72
#define NR_EXECVE 59
#define NR_EXIT_GROUP 231
static long sys3(long n, long a, long b, long c) {
  long r;
  __asm__ volatile("syscall"
                   : "=a"(r)
                   : "a"(n), "D"(a), "S"(b), "d"(c)
                   : "rcx", "r11", "memory");
  return r;
}
__asm__(".text\n.globl _start\n_start:\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call stub_main\n"
        "  hlt\n");
#elif defined(__aarch64__)
#define NR_WRITE 64
#define NR_FCNTL 25
#define NR_EXECVE 221
#define NR_EXIT_GROUP 94
static long sys3(long n, long a, long b, long c) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
  return x0;
}
__asm__(".text\n.globl _start\n_start:\n"
        "  mov x0, sp\n"
        "  bl stub_main\n");
#else
#error "berth's exec stub: no syscall glue for this architecture"
#endif

#define F_SETFD 2
#define FD_CLOEXEC 1

static unsigned long len(const char *s) {
  unsigned long n = 0;
  while (s[n])
    n++;
  return n;
}

static int eq(const char *a, const char *b) {
  while (*a && *a == *b) {
    a++;
    b++;
  }
  return *a == *b;
}

static void say(const char *s) { sys3(NR_WRITE, 2, (long)s, (long)len(s)); }

__attribute__((noreturn)) static void leave(int code) {
  for (;;)
    sys3(NR_EXIT_GROUP, code, 0, 0);
}

/* The messages Rust's io::Error gives, lower-cased as runc words them. */
static const char *describe(int e) {
  switch (e) {
  case 1: return "operation not permitted";
  case 2: return "no such file or directory";
  case 7: return "argument list too long";
  case 8: return "exec format error";
  case 12: return "cannot allocate memory";
  case 13: return "permission denied";
  case 20: return "not a directory";
  case 21: return "is a directory";
  case 26: return "text file busy";
  case 36: return "file name too long";
  case 40: return "too many levels of symbolic links";
  default: return "exec failed";
  }
}

__attribute__((noreturn, used)) void stub_main(long *sp) {
  long argc = sp[0];
  char **argv = (char **)(sp + 1);
  char **envp = argv + argc + 1;
  if (argc < 4 || !eq(argv[0], "berth-exec")) {
    say("berth: refusing to run the runtime's exec stub as a program of the "
        "container\n");
    leave(126);
  }
  long fd = -1;
  int report = 0;
  const char *p = argv[1];
  if (*p == 'c')
    p++;
  else
    report = 1;
  if (*p >= '0' && *p <= '9') {
    fd = 0;
    for (; *p >= '0' && *p <= '9'; p++)
      fd = fd * 10 + (*p - '0');
    sys3(NR_FCNTL, fd, F_SETFD, FD_CLOEXEC);
  }
  long r = sys3(NR_EXECVE, (long)argv[2], (long)(argv + 3), (long)envp);
  int err = (int)-r;
  if (fd >= 0 && report) {
    char msg[5] = {'X', (char)(err & 0xff), (char)((err >> 8) & 0xff), 0, 0};
    sys3(NR_WRITE, fd, (long)msg, 5);
  } else {
    say("berth-runc: exec \"");
    say(argv[2]);
    say("\": ");
    say(describe(err));
    say("\n");
  }
  leave(err == 2 ? 127 : 126);
}
