# The example programs as tests on the CPU backend. Included from tests/CMakeLists.txt.
#   examples_finetune        finetune with no arguments (its built-in demo) in a fresh directory
#   examples_serve_and_tune  serve, train a new adapter between requests, hot-swap it
#   examples_engine_step     frame-budgeted training with cancellation
#   memcheck_serve_and_tune  serve_and_tune (short) under valgrind: no invalid access, no leak
# Each example exits 0 only when it showed what it is for (the loss fell, cancellation left the
# adapter unchanged, ...). They run in their own directory under the build tree, as they write
# their demo model into the working directory.

if(NOT AXL_BUILD_EXAMPLES)
  return()
endif()

set(AXL_EXAMPLES_RUN_DIR ${CMAKE_CURRENT_BINARY_DIR}/examples_run)
set(AXL_EXAMPLES_SKIP_CODE 77)
# CI machines share their cores: an OpenMP thread that spins while waiting for a descheduled
# peer makes a tiny model's step tens of times slower. Sleeping waits cost nothing here.
set(AXL_EXAMPLES_ENV OMP_WAIT_POLICY=PASSIVE)

# Runs COMMAND (after LAUNCHER, if any) in an emptied directory named after the test.
function(axl_example_test name)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "LAUNCHER;COMMAND")
  set(dir ${AXL_EXAMPLES_RUN_DIR}/${name})
  add_test(NAME ${name}
           COMMAND sh -c "rm -rf '${dir}' && mkdir -p '${dir}' && cd '${dir}' && exec \"$@\""
                   sh ${arg_LAUNCHER} ${arg_COMMAND})
  set_tests_properties(${name} PROPERTIES ENVIRONMENT "${AXL_EXAMPLES_ENV}" TIMEOUT 600)
endfunction()

axl_example_test(examples_finetune COMMAND $<TARGET_FILE:finetune>)
axl_example_test(examples_serve_and_tune COMMAND $<TARGET_FILE:serve_and_tune>)
axl_example_test(examples_engine_step COMMAND $<TARGET_FILE:engine_step>)
set_tests_properties(examples_finetune examples_serve_and_tune examples_engine_step
                     PROPERTIES LABELS examples)

# valgrind cannot run sanitizer builds; one thread keeps OpenMP's pool out of the report.
find_program(AXL_VALGRIND valgrind)
if(AXL_VALGRIND AND NOT AXL_SANITIZE)
  axl_example_test(memcheck_serve_and_tune
                   LAUNCHER ${AXL_VALGRIND} --error-exitcode=1 --leak-check=full
                   COMMAND $<TARGET_FILE:serve_and_tune> --rounds 1 --steps-per-round 3 --threads 1)
else()
  if(AXL_SANITIZE)
    set(reason "the sanitizer build cannot run under valgrind")
  else()
    set(reason "valgrind is not installed")
  endif()
  add_test(NAME memcheck_serve_and_tune
           COMMAND sh -c "echo 'memcheck_serve_and_tune SKIPPED: ${reason}'; exit ${AXL_EXAMPLES_SKIP_CODE}")
  set_tests_properties(memcheck_serve_and_tune PROPERTIES SKIP_RETURN_CODE ${AXL_EXAMPLES_SKIP_CODE})
endif()
set_tests_properties(memcheck_serve_and_tune PROPERTIES LABELS memcheck)
