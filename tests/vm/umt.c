/* umt DIR N INTERVAL_MS: N times, mount a tmpfs on DIR, write a small file
 * into it, and time umount(2) of it with CLOCK_MONOTONIC; then wait
 * INTERVAL_MS. Prints one line per unmount: "<start_ns> <duration_us>".
 * (berth's VM writeback bench: the idle filesystem whose unmounts must not
 * stall while containers exit.) */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
	if (argc != 4) {
		fprintf(stderr, "usage: umt DIR N INTERVAL_MS\n");
		return 2;
	}
	const char *dir = argv[1];
	int n = atoi(argv[2]), iv = atoi(argv[3]);
	char file[4096];
	snprintf(file, sizeof file, "%s/f", dir);
	for (int i = 0; i < n; i++) {
		if (mount("umt", dir, "tmpfs", 0, "size=1m") != 0) {
			perror("mount");
			return 1;
		}
		int fd = open(file, O_WRONLY | O_CREAT, 0644);
		if (fd >= 0) {
			(void)!write(fd, "x", 1);
			close(fd);
		}
		long long t0 = now_ns();
		if (umount(dir) != 0) {
			perror("umount");
			return 1;
		}
		long long t1 = now_ns();
		printf("%lld %lld\n", t0, (t1 - t0) / 1000);
		usleep(iv * 1000);
	}
	return 0;
}
