/* SPDX-License-Identifier: Apache-2.0
 * Status names and the thread-local detail message behind resq_last_error(). */
#include "resq/status.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char g_msg[512];

const char *resq_status_name(resq_status s) {
  switch (s) {
    case RESQ_OK: return "RESQ_OK";
    case RESQ_ERR_INVALID_ARG: return "RESQ_ERR_INVALID_ARG";
    case RESQ_ERR_SHAPE: return "RESQ_ERR_SHAPE";
    case RESQ_ERR_UNSUPPORTED: return "RESQ_ERR_UNSUPPORTED";
    case RESQ_ERR_NONFINITE: return "RESQ_ERR_NONFINITE";
    case RESQ_ERR_DEGENERATE: return "RESQ_ERR_DEGENERATE";
    case RESQ_ERR_FORMAT: return "RESQ_ERR_FORMAT";
    case RESQ_ERR_IO: return "RESQ_ERR_IO";
    case RESQ_ERR_TOO_LARGE: return "RESQ_ERR_TOO_LARGE";
    case RESQ_ERR_NOMEM: return "RESQ_ERR_NOMEM";
    case RESQ_ERR_NO_DEVICE: return "RESQ_ERR_NO_DEVICE";
    case RESQ_ERR_DEVICE: return "RESQ_ERR_DEVICE";
    case RESQ_ERR_INTERNAL: return "RESQ_ERR_INTERNAL";
  }
  return "RESQ_ERR_UNKNOWN";
}

const char *resq_last_error(void) { return g_msg; }

void resq_clear_error(void) { g_msg[0] = '\0'; }

resq_status resq_fail(resq_status s, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_msg, sizeof g_msg, fmt, ap);
  va_end(ap);
  return s;
}
