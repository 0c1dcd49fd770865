# The installed package works: `cmake --install` into a temporary prefix, then a C consumer
# (tests/install/consumer) built against it runs (run.cmake):
#   install_find_package  a C-only CMake project with find_package(axl)
#   install_pkg_config    the same program compiled with the flags of `pkg-config axl`
# Included from tests/CMakeLists.txt; label "install".
find_program(AXL_PKG_CONFIG NAMES pkg-config pkgconf)
foreach(mode find_package pkg-config)
  string(REPLACE "-" "_" name "install_${mode}")
  add_test(NAME ${name}
           COMMAND ${CMAKE_COMMAND} -DMODE=${mode} -DAXL_BUILD_DIR=${PROJECT_BINARY_DIR}
                   -DAXL_SOURCE_DIR=${PROJECT_SOURCE_DIR}
                   -DWORK_DIR=${CMAKE_CURRENT_BINARY_DIR}/${name}
                   -DC_COMPILER=${CMAKE_C_COMPILER}
                   -P ${CMAKE_CURRENT_LIST_DIR}/run.cmake)
  set_tests_properties(${name} PROPERTIES LABELS install TIMEOUT 600
                       ENVIRONMENT OMP_WAIT_POLICY=PASSIVE)
endforeach()
if(NOT AXL_PKG_CONFIG)
  set_tests_properties(install_pkg_config PROPERTIES DISABLED ON)
endif()
