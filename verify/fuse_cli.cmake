# SPDX-License-Identifier: Apache-2.0
# fuse_cli_check: the helper of the `resq fuse` cases of verify/cli_test.sh (ctest cli_resq),
# which finds it next to npy_tool (the same directory of the build tree). Not a test itself.
add_executable(fuse_cli_check ${CMAKE_CURRENT_LIST_DIR}/fuse_cli_check.c)
target_compile_options(fuse_cli_check PRIVATE ${RESQ_C_FLAGS} -O2)
target_link_libraries(fuse_cli_check PRIVATE resq_ref)
