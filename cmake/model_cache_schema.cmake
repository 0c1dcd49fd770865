# The model cache's flatbuffers schema (src/io/model_cache.fbs). The generated header
# src/io/model_cache_generated.h is committed, so a build needs only the flatbuffers headers
# (header-only use; version 2.0.8, which the generated code pins): from the system
# (libflatbuffers-dev) or from a copy in .deps/include (git-ignored; e.g. for machines without
# the package: cp -r /usr/include/flatbuffers .deps/include/).
# With flatc found, the target axl_cache_schema regenerates the header after a schema change and
# the test cache_schema_up_to_date checks that the committed header matches the schema.
find_path(AXL_FLATBUFFERS_INCLUDE_DIR flatbuffers/flatbuffers.h
  HINTS ${PROJECT_SOURCE_DIR}/.deps/include
  DOC "Directory holding flatbuffers/flatbuffers.h (2.0.8)")
if(NOT AXL_FLATBUFFERS_INCLUDE_DIR)
  message(FATAL_ERROR "flatbuffers headers not found: apt-get install libflatbuffers-dev "
                      "(scripts/install-deps.sh), or copy /usr/include/flatbuffers into "
                      "${PROJECT_SOURCE_DIR}/.deps/include/")
endif()
target_include_directories(axl_engine SYSTEM PRIVATE ${AXL_FLATBUFFERS_INCLUDE_DIR})

find_program(AXL_FLATC flatc DOC "flatbuffers compiler (regenerates src/io/model_cache_generated.h)")
set(AXL_CACHE_SCHEMA ${PROJECT_SOURCE_DIR}/src/io/model_cache.fbs)
if(AXL_FLATC)
  add_custom_target(axl_cache_schema
    COMMAND ${AXL_FLATC} --cpp --scoped-enums -o ${PROJECT_SOURCE_DIR}/src/io ${AXL_CACHE_SCHEMA}
    COMMENT "Regenerating src/io/model_cache_generated.h from model_cache.fbs"
    VERBATIM)
endif()
