/*
 * rovn's pod sandbox process: the first process of every pod, holding the pod's
 * namespaces open for its containers.
 *
 * It does nothing but wait. As process 1 of a pid namespace it reaps the
 * children re-parented to it (SIGCHLD), and it exits at once with status 0 on
 * SIGTERM or SIGINT (process 1 gets no default signal actions, so without
 * handlers it would ignore them and the runtime would have to SIGKILL it).
 * Built statically (gcc -static) so that the image holds this file alone.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void reap(int sig)
{
	int saved = errno;

	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
	errno = saved;
}

static int on(int sig, void (*handler)(int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sa.sa_flags = SA_RESTART;
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL);
}

int main(int argc, char **argv)
{
	static const char usage[] = "usage: pause (no arguments): waits, reaping children, until SIGTERM or SIGINT\n";

	(void)argv;
	if (argc > 1) {
		(void)!write(2, usage, sizeof(usage) - 1);
		return 2;
	}
	if (on(SIGTERM, stop) || on(SIGINT, stop) || on(SIGCHLD, reap)) {
		static const char err[] = "pause: sigaction failed\n";
		(void)!write(2, err, sizeof(err) - 1);
		return 1;
	}
	for (;;)
		pause();
}
