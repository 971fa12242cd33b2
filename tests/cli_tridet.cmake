# `flowless detect` on a TriDet checkpoint with TriDet's own config
# (tests/data/tridet_small, from the reference code): the same number of
# detections per video as the reference and the same best label; a config
# with an unsupported downsampling is named in the error; `flowless train`
# refuses TriDet (inference only). Needs -DCLI, -DWORK_DIR and -DDATA.
set(W ${WORK_DIR})
file(REMOVE_RECURSE ${W})
include(${CMAKE_CURRENT_LIST_DIR}/cli_common.cmake)

set(F ${DATA}/tridet_small)
detect_like_reference(${F} ${W} ${F}/config.json ${F}/weights.safetensors vid00 vid01 vid02)

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
