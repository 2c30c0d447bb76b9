# SPDX-License-Identifier: Apache-2.0
# The device probe (label cpu: runs with or without a GPU and checks the
# no-device behaviour here) and the memory helpers on a GPU (label gpu).
resq_gpu_test(cuda_device device EXE cuda_device_test SOURCES ${CMAKE_CURRENT_LIST_DIR}/cuda_device_test.c
              ARGS --mode device)
add_test(NAME cuda_device_probe COMMAND cuda_device_test --mode probe)
set_tests_properties(cuda_device_probe PROPERTIES LABELS "cpu;device" TIMEOUT 120)
