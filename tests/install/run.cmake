# Installs the build into a fresh prefix, then builds tests/install/consumer against it and runs
# it: with find_package(axl) (MODE=find_package) or with pkg-config (MODE=pkg-config). Run by
# ctest (tests/install/install.cmake):
#   cmake -DMODE=... -DAXL_BUILD_DIR=... -DAXL_SOURCE_DIR=... -DWORK_DIR=... -DC_COMPILER=... -P run.cmake

foreach(var MODE AXL_BUILD_DIR AXL_SOURCE_DIR WORK_DIR C_COMPILER)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run.cmake needs -D${var}=...")
  endif()
endforeach()

set(prefix ${WORK_DIR}/prefix)
set(consumer_dir ${AXL_SOURCE_DIR}/tests/install/consumer)
set(demo_include_dir ${AXL_SOURCE_DIR}/examples)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/run)

# Runs a command; on failure prints its output and stops with `why`.
function(run why)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "WORKING_DIRECTORY;OUTPUT_VARIABLE" "COMMAND")
  if(NOT arg_WORKING_DIRECTORY)
    set(arg_WORKING_DIRECTORY ${WORK_DIR})
  endif()
  execute_process(COMMAND ${arg_COMMAND} WORKING_DIRECTORY ${arg_WORKING_DIRECTORY}
                  RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE out
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "install test: ${why} (exit ${result}):\n${out}")
  endif()
  if(arg_OUTPUT_VARIABLE)
    set(${arg_OUTPUT_VARIABLE} "${out}" PARENT_SCOPE)
  endif()
endfunction()

# A C-only CMake project with find_package(axl).
function(consumer_with_find_package)
  execute_process(
    COMMAND ${CMAKE_COMMAND} -S ${consumer_dir} -B ${WORK_DIR}/cmake-build
            -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_C_COMPILER=${C_COMPILER}
            -DAXL_DEMO_INCLUDE_DIR=${demo_include_dir}
    RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT result EQUAL 0)
    if(out MATCHES "OpenMP")
      string(CONCAT hint "\naxlConfig.cmake asks for find_dependency(OpenMP COMPONENTS CXX), "
             "which fails in a project that enables only C. The shared axl::axl needs no "
             "dependency from its consumer (OpenMP is linked into libaxl.so); only "
             "axl::axl_static does.")
    endif()
    message(FATAL_ERROR "install test: a C project cannot find_package(axl):\n${out}${hint}")
  endif()
  run("the find_package consumer does not build"
      COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/cmake-build)
  run("the find_package consumer failed" COMMAND ${WORK_DIR}/cmake-build/consumer
      WORKING_DIRECTORY ${WORK_DIR}/run OUTPUT_VARIABLE out)
  message(STATUS "find_package(axl) consumer: ${out}")
endfunction()

# The same program compiled with the flags of `pkg-config axl`.
function(consumer_with_pkg_config)
  find_program(PKG_CONFIG NAMES pkg-config pkgconf)
  if(NOT PKG_CONFIG)
    message(FATAL_ERROR "install test: pkg-config not found")
  endif()
  file(GLOB_RECURSE pc_files ${prefix}/*/axl.pc)
  if(NOT pc_files)
    message(FATAL_ERROR "install test: no axl.pc installed under ${prefix}")
  endif()
  list(GET pc_files 0 pc_file)
  get_filename_component(pc_dir ${pc_file} DIRECTORY)
  set(ENV{PKG_CONFIG_PATH} ${pc_dir})
  run("pkg-config does not know axl" COMMAND ${PKG_CONFIG} --variable=prefix axl OUTPUT_VARIABLE pc_prefix)
  get_filename_component(pc_prefix_real "${pc_prefix}" REALPATH)
  get_filename_component(prefix_real "${prefix}" REALPATH)
  if(NOT pc_prefix_real STREQUAL prefix_real)
    string(CONCAT why "install test: the installed axl.pc says prefix=${pc_prefix} but it was "
           "installed into ${prefix}: axl.pc is configured with CMAKE_INSTALL_PREFIX at configure "
           "time, so `cmake --install --prefix` gives a .pc that points elsewhere (a relocatable "
           ".pc would set prefix=\${pcfiledir}/../..)")
    message(FATAL_ERROR "${why}")
  endif()
  run("pkg-config --cflags --libs axl failed"
      COMMAND ${PKG_CONFIG} --cflags --libs axl OUTPUT_VARIABLE flags)
  run("pkg-config --variable=libdir axl failed"
      COMMAND ${PKG_CONFIG} --variable=libdir axl OUTPUT_VARIABLE libdir)
  separate_arguments(flags UNIX_COMMAND "${flags}")
  run("the pkg-config consumer does not compile"
      COMMAND ${C_COMPILER} -std=c99 -Wall -Wextra -I${demo_include_dir} ${consumer_dir}/main.c
              ${flags} -Wl,-rpath,${libdir} -lm -o ${WORK_DIR}/consumer-pkg-config)
  run("the pkg-config consumer failed" COMMAND ${WORK_DIR}/consumer-pkg-config
      WORKING_DIRECTORY ${WORK_DIR}/run OUTPUT_VARIABLE out)
  message(STATUS "pkg-config consumer: ${out}")
endfunction()

run("cmake --install into ${prefix} failed"
    COMMAND ${CMAKE_COMMAND} --install ${AXL_BUILD_DIR} --prefix ${prefix})
message(STATUS "installed into ${prefix}")
if(MODE STREQUAL "find_package")
  consumer_with_find_package()
elseif(MODE STREQUAL "pkg-config")
  consumer_with_pkg_config()
else()
  message(FATAL_ERROR "run.cmake: MODE is find_package or pkg-config, not '${MODE}'")
endif()
