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

# The CUDA training step against the CPU step (tests/cuda/step_check.cpp): same model, same
# adapter init, loss, gradients and updated weights after one step, a 200-step learning run, and
# the device memory budget. Linked to the whole engine's objects; exits 77 without a device.
add_executable(axl_step_check ${CMAKE_CURRENT_SOURCE_DIR}/cuda/step_check.cpp $<TARGET_OBJECTS:axl_engine>)
target_link_libraries(axl_step_check PRIVATE axl_engine)
target_include_directories(axl_step_check PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
add_test(NAME axl_step_check COMMAND axl_step_check)
set_tests_properties(axl_step_check PROPERTIES LABELS gpu SKIP_RETURN_CODE 77 TIMEOUT 900)
