/* SPDX-License-Identifier: Apache-2.0
 * Replays fuzz inputs without libFuzzer: `<target>_replay FILE|DIR...` runs
 * LLVMFuzzerTestOneInput on every file (directories: their regular files, in
 * name order) and exits 0 when every input ran. A crash, a sanitizer finding
 * or a failed property (abort) fails the run; the last line printed before it
 * names the input. This is how the seed corpus and every crash ever found
 * (verify/fuzz/regress/<target>/) run in the normal ctest build. */
#define _XOPEN_SOURCE 700 /* realpath */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_INPUT (1u << 24) /* 16 MiB: far above any committed input */

static int run_file(const char *path, long *count) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    fprintf(stderr, "replay: cannot open %s\n", path);
    return 1;
  }
  uint8_t *buf = (uint8_t *)malloc(MAX_INPUT);
  if (!buf) {
    fclose(f);
    fprintf(stderr, "replay: out of memory\n");
    return 1;
  }
  size_t n = fread(buf, 1, MAX_INPUT, f);
  int too_big = !feof(f);
  fclose(f);
  if (too_big) {
    free(buf);
    fprintf(stderr, "replay: %s is larger than %u bytes\n", path, MAX_INPUT);
    return 1;
  }
  printf("replay: %s (%zu bytes)\n", path, n);
  fflush(stdout);
  /* a copy of exactly n bytes, so an overread past the input is an ASan finding */
  uint8_t *exact = (uint8_t *)malloc(n ? n : 1);
  if (!exact) {
    free(buf);
    return 1;
  }
  memcpy(exact, buf, n);
  free(buf);
  LLVMFuzzerTestOneInput(exact, n);
  free(exact);
  (*count)++;
  return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int run_path(const char *path, long *count) {
  struct stat sb;
  if (stat(path, &sb) != 0) {
    fprintf(stderr, "replay: no such file or directory: %s\n", path);
    return 1;
  }
  if (!S_ISDIR(sb.st_mode)) return run_file(path, count);
  DIR *d = opendir(path);
  if (!d) {
    fprintf(stderr, "replay: cannot open directory %s\n", path);
    return 1;
  }
  char **names = NULL;
  size_t nn = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (e->d_name[0] == '.') continue; /* ., .., and hidden files such as .gitkeep */
    if (nn == cap) {
      cap = cap ? 2 * cap : 64;
      char **nb = (char **)realloc(names, cap * sizeof *names);
      if (!nb) break;
      names = nb;
    }
    size_t len = strlen(path) + strlen(e->d_name) + 2;
    names[nn] = (char *)malloc(len);
    if (!names[nn]) break;
    snprintf(names[nn], len, "%s/%s", path, e->d_name);
    nn++;
  }
  closedir(d);
  if (nn) qsort(names, nn, sizeof *names, cmp_str);
  int rc = 0;
  for (size_t i = 0; i < nn; i++) {
    struct stat fs;
    if (stat(names[i], &fs) == 0 && S_ISREG(fs.st_mode)) rc |= run_file(names[i], count);
    free(names[i]);
  }
  free(names);
  return rc;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
    return 2;
  }
  /* absolute paths first: an initializer may change the working directory
   * (fuzz_cli works inside its sandbox) */
  char **abs = (char **)calloc((size_t)argc, sizeof *abs);
  if (!abs) return 1;
  for (int i = 1; i < argc; i++) {
    abs[i] = realpath(argv[i], NULL);
    if (!abs[i]) {
      fprintf(stderr, "replay: no such file or directory: %s\n", argv[i]);
      return 1;
    }
  }
  LLVMFuzzerInitialize(&argc, &argv);
  long count = 0;
  int rc = 0;
  for (int i = 1; i < argc; i++) {
    rc |= run_path(abs[i], &count);
    free(abs[i]);
  }
  free(abs);
  printf("replay: %ld input(s) ran\n", count);
  if (count == 0) {
    fprintf(stderr, "replay: no input ran (a replay of nothing is not a pass)\n");
    return 1;
  }
  return rc;
}
