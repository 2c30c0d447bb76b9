/* SPDX-License-Identifier: Apache-2.0
 * The CUDA device probe and the backend's behaviour without a device.
 *   --mode probe (label cpu; runs everywhere): resq_cuda_probe must agree with
 *     itself and with the entry points: with no usable GPU it returns
 *     RESQ_ERR_NO_DEVICE with a non-empty reason, resq_cuda_device_name() is "",
 *     and a kernel entry point given valid arguments fails with RESQ_ERR_NO_DEVICE
 *     (no crash, a message in resq_last_error()); with a GPU it returns RESQ_OK
 *     and a name "... (sm_XY, N SMs)".
 *   --mode device (label gpu; exits 77 without a GPU): memory helpers round trip,
 *     stream selection, a device error (absurd allocation) is RESQ_ERR_DEVICE. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resq/cuda.h"
#include "resq_check.h"
#include "resq_gpu.h"

static void case_probe(void) {
  if (!rc_case("probe_consistent")) return;
  char why[512] = "unset";
  resq_status st = resq_cuda_probe(why, sizeof why);
  printf("  probe: %s (%s)\n", resq_status_name(st), why);
  RC_CHECK(st == RESQ_OK || st == RESQ_ERR_NO_DEVICE, "probe returned %s", resq_status_name(st));
  RC_CHECK(why[0] != '\0' && strcmp(why, "unset") != 0, "probe gave no reason/name");
  char why2[512];
  RC_CHECK(resq_cuda_probe(why2, sizeof why2) == st, "probe is not stable");
  RC_CHECK(resq_cuda_probe(NULL, 0) == st, "probe with no buffer");
  if (st == RESQ_OK) {
    RC_CHECK(strstr(resq_cuda_device_name(), "(sm_") != NULL, "device name '%s'", resq_cuda_device_name());
    return;
  }
  RC_CHECK(resq_cuda_device_name()[0] == '\0', "a name without a device: '%s'", resq_cuda_device_name());
  /* entry points: valid arguments, no device -> RESQ_ERR_NO_DEVICE (the launch fails) */
  float fake[64];
  resq_clear_error();
  resq_status h = resq_hadamard_f32__cuda(1, 64, fake, 64, fake, 64, NULL, NULL, 0);
  RC_CHECK(h == RESQ_ERR_NO_DEVICE, "hadamard without a device: %s (%s)", resq_status_name(h), resq_last_error());
  RC_CHECK(resq_last_error()[0] != '\0', "no message");
  printf("  hadamard without a device: %s: %s\n", resq_status_name(h), resq_last_error());
  void *p = (void *)1;
  resq_status m = resq_cuda_malloc(&p, 16);
  RC_CHECK(m == RESQ_ERR_NO_DEVICE && p == NULL, "malloc without a device: %s, p=%p", resq_status_name(m), p);
  /* argument errors are still found first, with the reference's codes */
  RC_CHECK(resq_hadamard_f32__cuda(1, 100, fake, 100, fake, 100, NULL, NULL, 0) == RESQ_ERR_UNSUPPORTED, "n=100");
}

static void case_device(void) {
  if (!rc_case("memory_and_errors")) return;
  enum { N = 1 << 20 };
  unsigned char *h = malloc(N), *g = malloc(N);
  for (int i = 0; i < N; i++) h[i] = (unsigned char)(i * 7 + 3);
  void *d = NULL;
  RC_CHECK(resq_cuda_malloc(&d, N) == RESQ_OK && d, "malloc: %s", resq_last_error());
  RC_CHECK(resq_cuda_h2d(d, h, N) == RESQ_OK, "h2d");
  RC_CHECK(resq_cuda_d2h(g, d, N) == RESQ_OK, "d2h");
  rc_equal_bytes(g, h, N, "round trip");
  RC_CHECK(resq_cuda_memset(d, 0x5c, N / 2) == RESQ_OK && resq_cuda_sync() == RESQ_OK, "memset");
  RC_CHECK(resq_cuda_d2h(g, d, N) == RESQ_OK, "d2h");
  int ok = 1;
  for (int i = 0; i < N; i++) ok &= g[i] == (i < N / 2 ? 0x5c : h[i]);
  RC_CHECK(ok, "memset wrote the wrong bytes");
  resq_cuda_free(d);
  void *big = NULL;
  resq_status st = resq_cuda_malloc(&big, (size_t)1 << 62);
  RC_CHECK(st == RESQ_ERR_DEVICE && big == NULL, "absurd malloc: %s", resq_status_name(st));
  RC_CHECK(strstr(resq_last_error(), "cudaMalloc") != NULL, "message '%s'", resq_last_error());
  void *s0 = resq_cuda_get_stream();
  resq_cuda_set_stream((void *)0);
  RC_CHECK(resq_cuda_get_stream() == NULL, "default stream");
  resq_cuda_set_stream(s0);
  free(h), free(g);
}

int main(int argc, char **argv) {
  rc_init("cuda_device_test", argc, argv);
  const char *mode = rc_arg("mode");
  if (mode && strcmp(mode, "device") == 0) {
    rc_gpu_require("cuda_device_test");
    case_device();
  } else {
    case_probe();
  }
  return rc_finish();
}
