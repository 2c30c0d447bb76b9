# SPDX-License-Identifier: Apache-2.0
# Robustness checks that run in every build (label "cpu;robust"):
#   fuzz_npy_replay, fuzz_cli_replay  the fuzz targets of verify/fuzz/ built
#       without libFuzzer, replaying the committed seed corpus and every crash
#       ci/fuzz.sh ever found (verify/fuzz/regress/<target>/): a fixed bug stays
#       fixed. (ci/fuzz.sh does the fuzzing itself, with clang.)
#   cli_badinput  the README's bad-input table, row by row (cli_badinput_test.sh)
set(_robust_dir ${CMAKE_CURRENT_LIST_DIR})

add_executable(fuzz_npy_replay ${_robust_dir}/fuzz/fuzz_npy.c ${_robust_dir}/fuzz/replay_main.c)
target_compile_options(fuzz_npy_replay PRIVATE ${RESQ_C_FLAGS} -O2)
target_link_libraries(fuzz_npy_replay PRIVATE resq_ref)
add_test(NAME fuzz_npy_replay COMMAND fuzz_npy_replay ${_robust_dir}/fuzz/corpus/npy ${_robust_dir}/fuzz/regress/npy)

# the command's sources, resq.c through fuzz/resq_main.c (its main renamed resq_main)
file(GLOB _robust_cli_sources CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/ref/cli/*.c)
list(FILTER _robust_cli_sources EXCLUDE REGEX "/resq\\.c$")
add_executable(fuzz_cli_replay ${_robust_dir}/fuzz/fuzz_cli.c ${_robust_dir}/fuzz/replay_main.c
                               ${_robust_dir}/fuzz/resq_main.c ${_robust_cli_sources})
target_include_directories(fuzz_cli_replay PRIVATE ${PROJECT_SOURCE_DIR}/ref/cli)
target_compile_options(fuzz_cli_replay PRIVATE ${RESQ_C_FLAGS} -O2)
target_compile_definitions(fuzz_cli_replay PRIVATE RESQ_VERSION_STRING="replay")
target_link_libraries(fuzz_cli_replay PRIVATE resq_ref)
add_test(NAME fuzz_cli_replay COMMAND fuzz_cli_replay ${_robust_dir}/fuzz/corpus/cli ${_robust_dir}/fuzz/regress/cli)

set_tests_properties(fuzz_npy_replay fuzz_cli_replay PROPERTIES LABELS "cpu;robust" TIMEOUT 300)

# the README's bad-input table, one row id per group of checks
add_test(NAME cli_badinput COMMAND bash ${_robust_dir}/cli_badinput_test.sh $<TARGET_FILE:resq> $<TARGET_FILE:npy_tool>
                                   ${_robust_dir}/fuzz/corpus/npy)
set_tests_properties(cli_badinput PROPERTIES LABELS "cpu;robust;cli" TIMEOUT 300)
