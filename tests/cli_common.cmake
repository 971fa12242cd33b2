# Helpers of the command-line tests (cmake -P scripts).
# run(CMD ...): fails the test unless CMD exits 0; its stdout is left in LAST_OUT.
# run_fails(EXPECTED CMD ...): fails the test unless CMD fails with EXPECTED in its stderr.
# write_annotations(OUT EXPECTED SUBSET VIDEO ...): an annotations file (ActionFormer's layout, no
#   instances) giving each VIDEO the duration and fps of its entry in the fixture's
#   expected_detections.json (file EXPECTED).
# detect_like_reference(FIXTURE WORK CONFIG WEIGHTS VIDEO ...): `flowless detect` with a reference
#   config and weights on the fixture's VIDEO.npy files (copied to WORK/feats, annotations in
#   WORK/ann.json, predictions in WORK/pred.json); fails unless every video gets as many
#   detections as the reference kept and the same best label.
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

function(detect_like_reference fixture work config weights)
  file(READ ${fixture}/expected_detections.json exp)
  file(MAKE_DIRECTORY ${work}/feats)
  foreach(v ${ARGN})
    configure_file(${fixture}/${v}.npy ${work}/feats/${v}.npy COPYONLY)
  endforeach()
  write_annotations(${work}/ann.json ${fixture}/expected_detections.json test ${ARGN})
  run(${CLI} detect --config ${config} --weights ${weights} --features ${work}/feats
      --annotations ${work}/ann.json --out ${work}/pred.json)
  file(READ ${work}/pred.json pred)
  foreach(v ${ARGN})
    string(JSON n_ref LENGTH "${exp}" ${v} detections)
    string(JSON n_got LENGTH "${pred}" results ${v})
    if(NOT n_got EQUAL n_ref)
      message(FATAL_ERROR "${v}: ${n_got} detections, the reference kept ${n_ref}")
    endif()
    string(JSON l_ref GET "${exp}" ${v} detections 0 label_id)
    string(JSON l_got GET "${pred}" results ${v} 0 label_id)
    string(JSON s_ref GET "${exp}" ${v} detections 0 segment 0)
    string(JSON s_got GET "${pred}" results ${v} 0 segment 0)
    if(NOT l_got EQUAL l_ref)
      message(FATAL_ERROR "${v}: best detection has label ${l_got}, the reference's ${l_ref}")
    endif()
    message(STATUS "${v}: ${n_got} detections as the reference; best starts at ${s_got} s (reference ${s_ref})")
  endforeach()
endfunction()
