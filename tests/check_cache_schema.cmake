# cmake -DFLATC=... -DSCHEMA=... -DCOMMITTED=... -DWORK_DIR=... -P check_cache_schema.cmake
# Fails when the committed generated header differs from what flatc makes of the schema.
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})
execute_process(COMMAND ${FLATC} --cpp --scoped-enums -o ${WORK_DIR} ${SCHEMA} RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "flatc failed on ${SCHEMA}")
endif()
get_filename_component(name ${COMMITTED} NAME)
file(READ ${WORK_DIR}/${name} generated)
file(READ ${COMMITTED} committed)
if(NOT generated STREQUAL committed)
  message(FATAL_ERROR "${COMMITTED} is out of date: rebuild the target axl_cache_schema "
                      "(flatc --cpp --scoped-enums -o src/io src/io/model_cache.fbs) and commit it")
endif()
