# `flowless detect` on a TemporalMaxer checkpoint with TemporalMaxer's own
# config (tests/data/temporalmaxer_small, from the reference code): the same
# number of detections per video as the reference, the same best detection,
# and a broken config named in the error. Needs -DCLI, -DWORK_DIR and -DDATA.
set(W ${WORK_DIR})
file(REMOVE_RECURSE ${W})
file(MAKE_DIRECTORY ${W}/feats)
include(${CMAKE_CURRENT_LIST_DIR}/cli_common.cmake)

set(F ${DATA}/temporalmaxer_small)
file(READ ${F}/expected_detections.json exp)
foreach(v vid00 vid01 vid02)
  configure_file(${F}/${v}.npy ${W}/feats/${v}.npy COPYONLY)
endforeach()
write_annotations(${W}/ann.json ${F}/expected_detections.json test vid00 vid01 vid02)
run(${CLI} detect --config ${F}/config.json --weights ${F}/weights.safetensors --features ${W}/feats
    --annotations ${W}/ann.json --out ${W}/pred.json)
file(READ ${W}/pred.json pred)
foreach(v vid00 vid01 vid02)
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

# A config whose group norm cannot split the channels is refused, naming the file.
file(READ ${F}/config.json cfg)
string(JSON cfg SET "${cfg}" model num_group 5)
file(WRITE ${W}/bad_groups.json "${cfg}")
run_fails("bad_groups.json" ${CLI} detect --config ${W}/bad_groups.json --weights ${F}/weights.safetensors
          --features ${W}/feats --annotations ${W}/ann.json --out ${W}/bad.json)
if(EXISTS ${W}/bad.json)
  message(FATAL_ERROR "a failed detect wrote its --out file")
endif()
message(STATUS "cli TemporalMaxer checkpoint ok")
