# GPU checks: every CUDA kernel against its CPU twin, with a micro-benchmark (tests/cuda/).
# Built whenever the CUDA backend is; on a machine without a CUDA device the program exits
# with 77, which ctest reports as skipped. Run on the GPU machine by scripts/gpu-check.sh.
#
# Linked to the engine's objects, like every other test, so the kernels are compiled once
# and the check links whatever the CUDA backend's files need.
add_executable(axl_kernel_check ${CMAKE_CURRENT_SOURCE_DIR}/cuda/kernel_check.cpp $<TARGET_OBJECTS:axl_engine>)
target_link_libraries(axl_kernel_check PRIVATE axl_engine)
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
