# ABI discipline (ABI.md, "What CI checks") and the API reference check. Included from
# tests/CMakeLists.txt. Tests labelled "abi":
#   abi_symbols         exported symbols of libaxl.so == abi/axl.symbols (scripts/check-abi.sh)
#   abi_abidiff         abidiff of the DWARF twin (below) against abi/libaxl.abi
#   abi_constants       every constant of abi/baseline/axl.h keeps its value
#   abi_old_client      tests/abi/old_client.c built against abi/baseline/axl.h, run on libaxl.so
#   abi_header_c99      include/axl.h as -std=c99 -Wall -Wextra -pedantic -Werror
#   abi_header_cxx      include/axl.h as C++11, same warnings
#   abi_struct_layout   static_asserts on sizeof/offsetof of the public structs; short structs
# and "docs": docs_api_reference, docs/api.md is what scripts/gen-api-docs.py makes of axl.h.

set(AXL_ABI_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/abi)
set(AXL_CHECK_ABI ${PROJECT_SOURCE_DIR}/scripts/check-abi.sh)
set(AXL_ABI_SKIP_CODE 77)

add_test(NAME abi_symbols COMMAND ${AXL_CHECK_ABI} symbols $<TARGET_FILE:axl>)
add_test(NAME abi_constants COMMAND ${AXL_CHECK_ABI} constants)
add_test(NAME abi_old_client COMMAND ${AXL_CHECK_ABI} old-client $<TARGET_FILE:axl>)
set_tests_properties(abi_symbols abi_constants abi_old_client PROPERTIES LABELS abi)
set_tests_properties(abi_old_client PROPERTIES ENVIRONMENT "CC=${CMAKE_C_COMPILER}")

# abidiff reads types from DWARF, which a Release libaxl.so does not carry. The twin is the same
# library (the sources, link libraries, options and version script of `axl`) except that the
# C boundary, src/api, where every exported function and public type lives, is compiled again
# with -g. abi/libaxl.abi is made from it too (scripts/check-abi.sh --update <twin>).
file(GLOB AXL_ABI_API_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/api/*.cpp)
add_library(axl_abi_api OBJECT ${AXL_ABI_API_SOURCES})
target_link_libraries(axl_abi_api PRIVATE axl_engine)
target_compile_options(axl_abi_api PRIVATE -g -O0)
get_target_property(axl_sources axl SOURCES)
get_target_property(axl_link_libraries axl LINK_LIBRARIES)
get_target_property(axl_link_options axl LINK_OPTIONS)
# Linking the object library axl_engine would add all its objects, src/api included; take only
# what it links to.
if("axl_engine" IN_LIST axl_link_libraries)
  get_target_property(axl_engine_link_libraries axl_engine INTERFACE_LINK_LIBRARIES)
  list(REMOVE_ITEM axl_link_libraries axl_engine)
  list(APPEND axl_link_libraries ${axl_engine_link_libraries})
endif()
add_library(axl_abi_twin SHARED
  "$<FILTER:${axl_sources},EXCLUDE,/src/api/>" $<TARGET_OBJECTS:axl_abi_api>)
target_link_libraries(axl_abi_twin PRIVATE ${axl_link_libraries})
target_link_options(axl_abi_twin PRIVATE ${axl_link_options})
set_target_properties(axl_abi_twin PROPERTIES
  OUTPUT_NAME axl
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/abi_twin
  VERSION ${PROJECT_VERSION}
  SOVERSION ${AXL_ABI_VERSION})
add_test(NAME abi_abidiff COMMAND ${AXL_CHECK_ABI} abidiff $<TARGET_FILE:axl_abi_twin>)
set_tests_properties(abi_abidiff PROPERTIES LABELS abi)

# The header on its own, as strict C99 and as C++11.
add_executable(axl_header_c99 ${AXL_ABI_TEST_DIR}/header_compiles.c)
add_executable(axl_header_cxx ${AXL_ABI_TEST_DIR}/header_compiles.cpp)
set_target_properties(axl_header_c99 PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
set_target_properties(axl_header_cxx PROPERTIES CXX_STANDARD 11 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
add_executable(axl_struct_layout ${AXL_ABI_TEST_DIR}/struct_layout.c)
set_target_properties(axl_struct_layout PROPERTIES C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF)
foreach(target axl_header_c99 axl_header_cxx axl_struct_layout)
  target_compile_options(${target} PRIVATE -Wall -Wextra -pedantic -Werror)
  target_link_libraries(${target} PRIVATE axl)
endforeach()
add_test(NAME abi_header_c99 COMMAND axl_header_c99)
add_test(NAME abi_header_cxx COMMAND axl_header_cxx)
add_test(NAME abi_struct_layout COMMAND axl_struct_layout)
set_tests_properties(abi_header_c99 abi_header_cxx abi_struct_layout PROPERTIES LABELS abi)

# The API reference is generated from the header; a header change needs a regenerated file.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME docs_api_reference
           COMMAND ${Python3_EXECUTABLE} ${PROJECT_SOURCE_DIR}/scripts/gen-api-docs.py --check)
else()
  add_test(NAME docs_api_reference
           COMMAND sh -c "echo 'docs_api_reference SKIPPED: no python3'; exit ${AXL_ABI_SKIP_CODE}")
  set_tests_properties(docs_api_reference PROPERTIES SKIP_RETURN_CODE ${AXL_ABI_SKIP_CODE})
endif()
set_tests_properties(docs_api_reference PROPERTIES LABELS docs)
