# GPU checks: every CUDA kernel against its CPU twin, with a micro-benchmark (tests/cuda/).
# Built whenever the CUDA backend is; on a machine without a CUDA device the program exits
# with 77, which ctest reports as skipped. Run on the GPU machine by scripts/gpu-check.sh.
#
# The program is built from the sources it exercises (the CUDA backend, the CPU reference ops,
# AdamW, the quantizers and the core under them), not from the whole engine: the GPU machine
# then compiles a fraction of the engine, and the check does not wait on unrelated parts of it.
file(GLOB AXL_KERNEL_CHECK_SOURCES CONFIGURE_DEPENDS
  ${PROJECT_SOURCE_DIR}/kernels/*.cu
  ${PROJECT_SOURCE_DIR}/src/backend/cuda/*.cpp
  ${PROJECT_SOURCE_DIR}/src/backend/cpu/*.cpp
  ${PROJECT_SOURCE_DIR}/src/quant/*.cpp
  ${PROJECT_SOURCE_DIR}/src/core/*.cpp)
add_executable(axl_kernel_check ${CMAKE_CURRENT_SOURCE_DIR}/cuda/kernel_check.cpp ${AXL_KERNEL_CHECK_SOURCES}
  ${PROJECT_SOURCE_DIR}/src/optim/adamw.cpp)
target_include_directories(axl_kernel_check PRIVATE ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
target_compile_definitions(axl_kernel_check PRIVATE AXL_BUILDING_LIBRARY AXL_HAVE_CUDA=1)
target_compile_options(axl_kernel_check PRIVATE
  "$<$<COMPILE_LANGUAGE:CUDA>:-lineinfo;--expt-relaxed-constexpr>")
target_link_libraries(axl_kernel_check PRIVATE OpenMP::OpenMP_CXX nlohmann_json::nlohmann_json Threads::Threads
  CUDA::cudart_static CUDA::cublasLt)
set_target_properties(axl_kernel_check PROPERTIES CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
  CUDA_RUNTIME_LIBRARY Static)
add_test(NAME axl_kernel_check COMMAND axl_kernel_check)
set_tests_properties(axl_kernel_check PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 900)
