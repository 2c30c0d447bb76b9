# SPDX-License-Identifier: Apache-2.0
# GPU tests: label "gpu;<stage>", SKIP_RETURN_CODE 77, serialized on the device.
function(resq_gpu_test tname stage)
  cmake_parse_arguments(T "" "EXE;TIMEOUT" "SOURCES;ARGS" ${ARGN})
  if(NOT T_EXE)
    set(T_EXE ${tname})
  endif()
  if(NOT TARGET ${T_EXE})
    add_executable(${T_EXE} ${T_SOURCES})
    target_compile_options(${T_EXE} PRIVATE ${RESQ_C_FLAGS} -O2)
    target_link_libraries(${T_EXE} PRIVATE resq_check resq_cuda)
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  add_test(NAME ${tname} COMMAND ${T_EXE} ${T_ARGS})
  set_tests_properties(${tname} PROPERTIES LABELS "gpu;${stage}" SKIP_RETURN_CODE 77 TIMEOUT ${T_TIMEOUT}
                                           RESOURCE_LOCK gpu0)
endfunction()
