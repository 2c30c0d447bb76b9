/* SPDX-License-Identifier: Apache-2.0
 * The BLAS/LAPACK routines the CPU backend's calibration stages (PCA, GPTQ)
 * call, declared here through their Fortran interfaces (column-major, every
 * argument by reference, gfortran's hidden character lengths last) so that no
 * particular cblas.h/lapacke.h is needed. The library is OpenBLAS (Debian
 * libopenblas-dev, which carries LAPACK too; cpu/CMakeLists.txt checks the
 * symbols). LAPACK integers are 32-bit (LP64 builds): every order we pass is
 * <= 32768 and every workspace size is checked to fit.
 *
 * Row-major storage and column-major routines: a row-major d x d array read
 * column-major is its transpose. For the symmetric matrices here that only
 * swaps the triangles: the row-major UPPER triangle is the column-major LOWER
 * one, so the calls below use uplo = "L" on row-major upper triangles. */
#ifndef RESQ_CPU_BLAS_H
#define RESQ_CPU_BLAS_H

#include <stddef.h>
#include <stdint.h>

typedef int resq_lapack_int;

void dsyrk_(const char *uplo, const char *trans, const resq_lapack_int *n, const resq_lapack_int *k,
            const double *alpha, const double *a, const resq_lapack_int *lda, const double *beta, double *c,
            const resq_lapack_int *ldc, size_t luplo, size_t ltrans);
void dgemm_(const char *transa, const char *transb, const resq_lapack_int *m, const resq_lapack_int *n,
            const resq_lapack_int *k, const double *alpha, const double *a, const resq_lapack_int *lda,
            const double *b, const resq_lapack_int *ldb, const double *beta, double *c, const resq_lapack_int *ldc,
            size_t la, size_t lb);
void dpotrf_(const char *uplo, const resq_lapack_int *n, double *a, const resq_lapack_int *lda,
             resq_lapack_int *info, size_t luplo);
void dpotri_(const char *uplo, const resq_lapack_int *n, double *a, const resq_lapack_int *lda,
             resq_lapack_int *info, size_t luplo);
void dsyevd_(const char *jobz, const char *uplo, const resq_lapack_int *n, double *a, const resq_lapack_int *lda,
             double *w, double *work, const resq_lapack_int *lwork, resq_lapack_int *iwork,
             const resq_lapack_int *liwork, resq_lapack_int *info, size_t ljobz, size_t luplo);

/* OpenBLAS thread control (process-global). */
void openblas_set_num_threads(int n);
int openblas_get_num_threads(void);

/* Run the BLAS with n threads until resq_cpu_blas_restore(): the calibration
 * stages give OpenBLAS the backend's thread count (resq_cpu_get_threads) for
 * their large factorizations, and 1 while the backend's own pool runs (each
 * pool thread then calls single-threaded BLAS on its own rows), so that the two
 * thread sets never compete for the cores. Returns the previous count. */
static inline int resq_cpu_blas_threads(int n) {
  int prev = openblas_get_num_threads();
  openblas_set_num_threads(n < 1 ? 1 : n);
  return prev;
}
static inline void resq_cpu_blas_restore(int prev) { openblas_set_num_threads(prev); }

#endif
