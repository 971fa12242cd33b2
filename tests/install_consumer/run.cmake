# Installs flowless into a prefix, then configures and builds a tiny consumer
# that uses find_package(flowless) and runs it.
file(REMOVE_RECURSE ${WORK_DIR})
set(B ${WORK_DIR}/build)
set(P ${WORK_DIR}/prefix)
foreach(step
    "${CMAKE_COMMAND};-S;${SOURCE_DIR};-B;${B};-DFLOWLESS_BUILD_TESTS=OFF;-DFLOWLESS_BUILD_BENCH=OFF;-DFLOWLESS_BUILD_EXAMPLES=OFF;-DFLOWLESS_BUILD_TOOLS=OFF;-DFLOWLESS_CUDA=OFF;-DCMAKE_INSTALL_PREFIX=${P}"
    "${CMAKE_COMMAND};--install;${B}"
    "${CMAKE_COMMAND};-S;${SOURCE_DIR}/tests/install_consumer;-B;${WORK_DIR}/consumer;-DCMAKE_PREFIX_PATH=${P}"
    "${CMAKE_COMMAND};--build;${WORK_DIR}/consumer"
    "${WORK_DIR}/consumer/consumer")
  execute_process(COMMAND ${step} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "step failed: ${step}\n${out}\n${err}")
  endif()
endforeach()
message(STATUS "consumer output: ${out}")
