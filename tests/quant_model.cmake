# Quantized base models: the C API test, and the Python oracles of the quantization formats and
# of models saved by transformers + bitsandbytes. Included from tests/CMakeLists.txt; uses the
# AXL_ORACLE_PYTHON and skip helpers of oracle.cmake.
#
#   quant_model_api      (api)     training over each 4-bit base, cache, export, bad input
#   quant_oracle_generate (oracle) tests/oracle/quant_oracle.py: reference codes per format
#   quant_oracle_axl     (oracle)  axl_unit_tests QuantOracle* against that file
#   bnb_oracle_generate  (oracle)  tests/oracle/bnb_model_oracle.py generate: a tiny model
#                                  quantized and saved by transformers + bitsandbytes (CPU)
#   bnb_oracle_axl       (oracle)  axl_bnb_oracle_test: those files against axl's own
#                                  quantize-on-load; trains, merges and exports an adapter
#   bnb_oracle_verify    (oracle)  bnb_model_oracle.py verify: transformers loads the export
#   cache_schema_up_to_date (unit) the committed model_cache_generated.h is what flatc makes of
#                                  the schema (only where flatc is installed)

add_executable(axl_quant_model_test ${AXL_API_TEST_DIR}/quant_model_test.cpp)
target_link_libraries(axl_quant_model_test PRIVATE axl GTest::gtest_main nlohmann_json::nlohmann_json)
gtest_discover_tests(axl_quant_model_test DISCOVERY_TIMEOUT 60 PROPERTIES LABELS api)

add_executable(axl_bnb_oracle_test ${AXL_API_TEST_DIR}/bnb_oracle_test.cpp)
target_link_libraries(axl_bnb_oracle_test PRIVATE axl GTest::gtest nlohmann_json::nlohmann_json)

set(AXL_QUANT_ORACLE_FILE ${CMAKE_CURRENT_BINARY_DIR}/quant_oracle.safetensors)
set(AXL_BNB_ORACLE_DATA ${CMAKE_CURRENT_BINARY_DIR}/bnb_oracle_data)
set(AXL_BNB_ORACLE_OUT ${CMAKE_CURRENT_BINARY_DIR}/bnb_oracle_out)

if(AXL_ORACLE_PYTHON)
  set(python_env HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false)

  add_test(NAME quant_oracle_generate
           COMMAND ${AXL_ORACLE_PYTHON} ${AXL_ORACLE_SCRIPT_DIR}/quant_oracle.py --out ${AXL_QUANT_ORACLE_FILE})
  set_tests_properties(quant_oracle_generate PROPERTIES
    FIXTURES_SETUP quant_oracle_data LABELS oracle TIMEOUT 900 ENVIRONMENT "${python_env}")
  add_test(NAME quant_oracle_axl COMMAND axl_unit_tests --gtest_filter=QuantOracle*)
  set_tests_properties(quant_oracle_axl PROPERTIES
    FIXTURES_REQUIRED quant_oracle_data LABELS oracle ENVIRONMENT "AXL_QUANT_ORACLE=${AXL_QUANT_ORACLE_FILE}")

  add_test(NAME bnb_oracle_generate
           COMMAND ${AXL_ORACLE_PYTHON} ${AXL_ORACLE_SCRIPT_DIR}/bnb_model_oracle.py generate --out ${AXL_BNB_ORACLE_DATA})
  set_tests_properties(bnb_oracle_generate PROPERTIES
    FIXTURES_SETUP bnb_oracle_data LABELS oracle TIMEOUT 900 ENVIRONMENT "${python_env}")
  add_test(NAME bnb_oracle_axl
           COMMAND axl_bnb_oracle_test --data=${AXL_BNB_ORACLE_DATA} --out=${AXL_BNB_ORACLE_OUT})
  set_tests_properties(bnb_oracle_axl PROPERTIES
    FIXTURES_REQUIRED bnb_oracle_data FIXTURES_SETUP bnb_oracle_out LABELS oracle
    SKIP_RETURN_CODE ${AXL_ORACLE_SKIP_CODE})
  add_test(NAME bnb_oracle_verify
           COMMAND ${AXL_ORACLE_PYTHON} ${AXL_ORACLE_SCRIPT_DIR}/bnb_model_oracle.py verify
                   --data ${AXL_BNB_ORACLE_DATA} --axl ${AXL_BNB_ORACLE_OUT})
  set_tests_properties(bnb_oracle_verify PROPERTIES
    FIXTURES_REQUIRED "bnb_oracle_data;bnb_oracle_out" LABELS oracle TIMEOUT 600 ENVIRONMENT "${python_env}")
else()
  set(reason "configure with -DAXL_ORACLE_PYTHON=<python with tests/oracle/requirements.txt> (scripts/test.sh does)")
  foreach(name quant_oracle_generate quant_oracle_axl bnb_oracle_generate bnb_oracle_axl bnb_oracle_verify)
    axl_oracle_skip_test(${name} "${reason}")
  endforeach()
endif()

if(AXL_FLATC)
  add_test(NAME cache_schema_up_to_date
           COMMAND ${CMAKE_COMMAND} -DFLATC=${AXL_FLATC} -DSCHEMA=${AXL_CACHE_SCHEMA}
                   -DCOMMITTED=${PROJECT_SOURCE_DIR}/src/io/model_cache_generated.h
                   -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/cache_schema_check
                   -P ${CMAKE_CURRENT_SOURCE_DIR}/check_cache_schema.cmake)
  set_tests_properties(cache_schema_up_to_date PROPERTIES LABELS unit)
endif()
