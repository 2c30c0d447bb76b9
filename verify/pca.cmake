# SPDX-License-Identifier: Apache-2.0
# PCA basis, eigensolver, Haar rotations, K8 and weight fusion (ref/CONTRACT.md s.13).
# Included by verify/CMakeLists.txt. One source, two programs: the properties (no
# external dependency; also runs `resq pca` end to end), and the LAPACK dsyevd
# cross-check, registered only when LAPACK is found (Debian: liblapack-dev).
resq_cpu_test(pca_f64__ref_props pca EXE pca_f64__ref_test SOURCES pca_f64__ref_test.c
              ARGS --resq $<TARGET_FILE:resq> --tmp ${CMAKE_CURRENT_BINARY_DIR}/pca_cli_tmp TIMEOUT 120)
add_dependencies(pca_f64__ref_test resq)

find_package(LAPACK QUIET)
if(LAPACK_FOUND)
  resq_cpu_test(pca_f64__ref_lapack pca EXE pca_f64__ref_lapack_test SOURCES pca_f64__ref_test.c
                ARGS --part lapack TIMEOUT 120)
  target_compile_definitions(pca_f64__ref_lapack_test PRIVATE RESQ_TEST_LAPACK=1)
  target_link_libraries(pca_f64__ref_lapack_test PRIVATE LAPACK::LAPACK)
  # small matrices: keep a threaded BLAS (OpenBLAS) from oversubscribing `ctest -j`
  set_tests_properties(pca_f64__ref_lapack PROPERTIES ENVIRONMENT "OPENBLAS_NUM_THREADS=1;OMP_NUM_THREADS=1")
else()
  message(STATUS "resq: LAPACK not found: the dsyevd cross-check pca_f64__ref_lapack is not built "
                 "(install liblapack-dev)")
endif()
