# The CUDA backend: kernels/*.cu (one op family per file) and the device runtime in
# src/backend/cuda/*.cpp, compiled into the engine's object library so that the shared and the
# static library, and everything linked to the engine's objects, carry them.
# Included from CMakeLists.txt when a CUDA compiler was found (AXL_HAVE_CUDA).

# Hopper first: sm_90a admits wgmma/setmaxnreg. Set CMAKE_CUDA_ARCHITECTURES to build others.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
  set(CMAKE_CUDA_ARCHITECTURES 90a)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
# C++20, like the engine: kernels include engine headers (core, quant) that use it. CMake 3.25
# knows no C++20 flag for nvcc (nvcc 12+ takes -std=c++20), so it is given here unless this
# CMake knows it already. The variables reach the targets made after this file (the libraries
# and tests that take the engine's objects); the engine, made before, is set below.
if(NOT DEFINED CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_EXTENSIONS OFF)
set(CMAKE_CUDA_VISIBILITY_PRESET hidden)

file(GLOB AXL_CUDA_KERNEL_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/kernels/*.cu)
file(GLOB AXL_CUDA_RUNTIME_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/backend/cuda/*.cpp)
target_sources(axl_engine PRIVATE ${AXL_CUDA_KERNEL_SOURCES} ${AXL_CUDA_RUNTIME_SOURCES})
target_compile_definitions(axl_engine PUBLIC AXL_HAVE_CUDA=1)
# Hopper's warpgroup kernels (kernels/wgmma.cuh) exist only in an sm_90a build; the host side
# takes them on a 9.x device when this is set.
if("${CMAKE_CUDA_ARCHITECTURES}" MATCHES "90a")
  target_compile_definitions(axl_engine PRIVATE AXL_CUDA_SM90A=1)
endif()
target_compile_options(axl_engine PRIVATE
  "$<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Wall,-Wextra,-Wno-unused-parameter;-lineinfo;--expt-relaxed-constexpr>")
# The static runtime: the library needs no libcudart.so beside it; cuBLASLt is shared.
target_link_libraries(axl_engine PUBLIC CUDA::cudart_static CUDA::cublasLt)
# Nothing of CUDA leaves the library: device code is hidden like the host code, and the linker
# version script (cmake/axl.map) keeps the static runtime's symbols local.
set_target_properties(axl_engine PROPERTIES
  CUDA_ARCHITECTURES "${CMAKE_CUDA_ARCHITECTURES}"
  CUDA_STANDARD 20
  CUDA_STANDARD_REQUIRED ON
  CUDA_EXTENSIONS OFF
  CUDA_VISIBILITY_PRESET hidden
  CUDA_RUNTIME_LIBRARY Static)

message(STATUS "axl: CUDA backend ON (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES})")

# axl-bench (bench/axl_bench.cpp): LoRA training steps on synthetic Llama shapes; a program run
# by hand (scripts/bench.sh), not a test. Linked to the engine's objects to build models in memory.
add_executable(axl_bench ${PROJECT_SOURCE_DIR}/bench/axl_bench.cpp $<TARGET_OBJECTS:axl_engine>)
target_link_libraries(axl_bench PRIVATE axl_engine)
set_target_properties(axl_bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/bench)
