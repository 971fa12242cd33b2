# `flowless detect` on a TriDet checkpoint with TriDet's own config
# (tests/data/tridet_small, from the reference code): the same number of
# detections per video as the reference and the same best label; a config
# with an unsupported downsampling is named in the error; `flowless train`
# refuses TriDet (inference only). Needs -DCLI, -DWORK_DIR and -DDATA.
set(W ${WORK_DIR})
file(REMOVE_RECURSE ${W})
file(MAKE_DIRECTORY ${W}/feats)
include(${CMAKE_CURRENT_LIST_DIR}/cli_common.cmake)

set(F ${DATA}/tridet_small)
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

# An SGP downsampling flowless does not implement is refused, naming the file.
file(READ ${F}/config.json cfg)
string(JSON cfg SET "${cfg}" model downsample_type "\"avg\"")
file(WRITE ${W}/bad_ds.json "${cfg}")
run_fails("bad_ds.json" ${CLI} detect --config ${W}/bad_ds.json --weights ${F}/weights.safetensors
          --features ${W}/feats --annotations ${W}/ann.json --out ${W}/bad.json)
if(EXISTS ${W}/bad.json)
  message(FATAL_ERROR "a failed detect wrote its --out file")
endif()

# Training a TriDet model is refused with the reason, before anything is trained.
run(${CLI} synth --out ${W}/data --preset tiny --seed 2)
run_fails("run inference only" ${CLI} train --data ${W}/data --arch tridet --out ${W}/td.safetensors)
if(EXISTS ${W}/td.safetensors)
  message(FATAL_ERROR "a refused train wrote its --out file")
endif()
message(STATUS "cli TriDet checkpoint ok")
