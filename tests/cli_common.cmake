# Helpers of the command-line tests (cmake -P scripts).
# run(CMD ...): fails the test unless CMD exits 0; its stdout is left in LAST_OUT.
# run_fails(EXPECTED CMD ...): fails the test unless CMD fails with EXPECTED in its stderr.
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(LAST_OUT "${out}" PARENT_SCOPE)
endfunction()
function(run_fails expected)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    message(FATAL_ERROR "expected a failure: ${ARGN}")
  endif()
  string(FIND "${err}" "${expected}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "error message of ${ARGN} lacks '${expected}':\n${err}")
  endif()
endfunction()

