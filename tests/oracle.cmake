# API tests (public header + the shared library `axl` only) and the oracle tests against
# PyTorch/transformers/PEFT. Included from tests/CMakeLists.txt.
#
# Oracle tests run as three ctest tests chained by fixtures, all labelled "oracle":
#   oracle_generate  python tests/oracle/generate.py: tiny checkpoints, transformers logits, PEFT run
#   oracle_axl       axl_oracle_test (C++): axl against that data; writes its trained adapters
#   oracle_verify    python tests/oracle/verify_axl_adapter.py: PEFT reads axl's adapters
# Configure with -DAXL_ORACLE_PYTHON=<python with tests/oracle/requirements.txt> to run all three
# (scripts/test.sh does). Alternatively -DAXL_ORACLE_DATA=<dir from generate.py --out> runs only
# oracle_axl against data generated elsewhere (the sanitizer build does this). With neither,
# the three tests report SKIPPED with the reason.

set(AXL_ORACLE_PYTHON "" CACHE FILEPATH
    "Python with tests/oracle/requirements.txt installed; empty skips the Python oracle tests")
set(AXL_ORACLE_DATA "" CACHE PATH
    "Oracle data made by tests/oracle/generate.py elsewhere; used when AXL_ORACLE_PYTHON is empty")

set(AXL_API_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/api)
set(AXL_ORACLE_SCRIPT_DIR ${CMAKE_CURRENT_SOURCE_DIR}/oracle)
set(AXL_ORACLE_SKIP_CODE 77)

foreach(name errors packed)
  add_executable(axl_${name}_test ${AXL_API_TEST_DIR}/${name}_test.cpp)
  target_link_libraries(axl_${name}_test PRIVATE axl GTest::gtest_main nlohmann_json::nlohmann_json)
  gtest_discover_tests(axl_${name}_test DISCOVERY_TIMEOUT 60 PROPERTIES LABELS api)
endforeach()

add_executable(axl_oracle_test ${AXL_API_TEST_DIR}/oracle_test.cpp)
target_link_libraries(axl_oracle_test PRIVATE axl GTest::gtest nlohmann_json::nlohmann_json)

set(AXL_ORACLE_AXL_OUT ${CMAKE_CURRENT_BINARY_DIR}/oracle_axl_out)

function(axl_oracle_skip_test name reason)
  add_test(NAME ${name} COMMAND sh -c "echo '${name} SKIPPED: ${reason}'; exit ${AXL_ORACLE_SKIP_CODE}")
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE ${AXL_ORACLE_SKIP_CODE} LABELS oracle)
endfunction()

if(AXL_ORACLE_PYTHON)
  set(AXL_ORACLE_DATA_DIR ${CMAKE_CURRENT_BINARY_DIR}/oracle_data)
  set(python_env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false)

  add_test(NAME oracle_generate
           COMMAND ${AXL_ORACLE_PYTHON} ${AXL_ORACLE_SCRIPT_DIR}/generate.py --out ${AXL_ORACLE_DATA_DIR})
  set_tests_properties(oracle_generate PROPERTIES
    FIXTURES_SETUP oracle_data LABELS oracle TIMEOUT 1200 ENVIRONMENT "${python_env}")

  add_test(NAME oracle_axl
           COMMAND axl_oracle_test --data=${AXL_ORACLE_DATA_DIR} --out=${AXL_ORACLE_AXL_OUT})
  set_tests_properties(oracle_axl PROPERTIES
    FIXTURES_REQUIRED oracle_data FIXTURES_SETUP oracle_axl_out LABELS oracle
    SKIP_RETURN_CODE ${AXL_ORACLE_SKIP_CODE})

  add_test(NAME oracle_verify
           COMMAND ${AXL_ORACLE_PYTHON} ${AXL_ORACLE_SCRIPT_DIR}/verify_axl_adapter.py
                   --data ${AXL_ORACLE_DATA_DIR} --axl ${AXL_ORACLE_AXL_OUT})
  set_tests_properties(oracle_verify PROPERTIES
    FIXTURES_REQUIRED "oracle_data;oracle_axl_out" LABELS oracle TIMEOUT 600 ENVIRONMENT "${python_env}")
elseif(AXL_ORACLE_DATA)
  axl_oracle_skip_test(oracle_generate "using pre-generated data in ${AXL_ORACLE_DATA} (AXL_ORACLE_DATA)")
  add_test(NAME oracle_axl COMMAND axl_oracle_test --data=${AXL_ORACLE_DATA} --out=${AXL_ORACLE_AXL_OUT})
  # axl_oracle_test exits with the skip code when the data are missing.
  set_tests_properties(oracle_axl PROPERTIES LABELS oracle SKIP_RETURN_CODE ${AXL_ORACLE_SKIP_CODE})
  axl_oracle_skip_test(oracle_verify "needs AXL_ORACLE_PYTHON")
else()
  set(reason "configure with -DAXL_ORACLE_PYTHON=<python with tests/oracle/requirements.txt> (scripts/test.sh does)")
  message(STATUS "Oracle tests will report SKIPPED: ${reason}")
  axl_oracle_skip_test(oracle_generate "${reason}")
  axl_oracle_skip_test(oracle_axl "${reason}")
  axl_oracle_skip_test(oracle_verify "${reason}")
endif()
