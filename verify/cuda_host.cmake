# SPDX-License-Identifier: Apache-2.0
# Host emulation of the CUDA Hadamard and quantizer kernels (label "cpu"): the
# kernels' __host__ __device__ index/arithmetic headers (cuda/src/rq_*.cuh)
# compiled with the host C++ compiler, replayed thread by thread and compared
# bit for bit with the reference. Needs no nvcc, so it runs in every build.
add_executable(cuda_host_test ${CMAKE_CURRENT_LIST_DIR}/cuda_host_test.cpp)
# C++ flavour of RESQ_C_FLAGS: IEEE binary32, no FMA contraction (the emulated
# arithmetic must round exactly like the contract), warnings as errors in CI.
target_compile_options(cuda_host_test PRIVATE -O2 -Wall -Wextra -Wshadow -ffp-contract=off -fno-fast-math
                                              -fno-math-errno $<$<BOOL:${RESQ_WERROR}>:-Werror>)
target_include_directories(cuda_host_test PRIVATE ${PROJECT_SOURCE_DIR}/cuda/include)
target_link_libraries(cuda_host_test PRIVATE resq_check)
add_test(NAME cuda_host_emulation COMMAND cuda_host_test)
set_tests_properties(cuda_host_emulation PROPERTIES LABELS "cpu;hadamard;quant" TIMEOUT 600)
