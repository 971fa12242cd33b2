# Helpers of the command-line tests (cmake -P scripts).
# run(CMD ...): fails the test unless CMD exits 0; its stdout is left in LAST_OUT.
# run_fails(EXPECTED CMD ...): fails the test unless CMD fails with EXPECTED in its stderr.
# write_annotations(OUT EXPECTED SUBSET VIDEO ...): an annotations file (ActionFormer's layout, no
#   instances) giving each VIDEO the duration and fps of its entry in the fixture's
#   expected_detections.json (file EXPECTED).
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

function(write_annotations out expected subset)
  file(READ ${expected} exp)
  set(ann "{\"database\": {")
  set(sep "")
  foreach(v ${ARGN})
    string(JSON d GET "${exp}" ${v} duration)
    string(JSON fps GET "${exp}" ${v} fps)
    string(APPEND ann "${sep}\"${v}\": {\"subset\": \"${subset}\", \"duration\": ${d}, \"fps\": ${fps}, \"annotations\": []}")
    set(sep ", ")
  endforeach()
  string(APPEND ann "}}")
  file(WRITE ${out} "${ann}")
endfunction()
