# `flowless detect` on a TriDet checkpoint with TriDet's own config
# (tests/data/tridet_small, from the reference code): the same number of
# detections per video as the reference and the same best label; a config
# with an unsupported downsampling is named in the error; `flowless train
# --arch tridet` trains one on the tiny synthetic data. Needs -DCLI, -DWORK_DIR
# and -DDATA.
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

# A TriDet trains from the command line (Trident head loss, input noise) and its
# file detects and evaluates; DCD with the TriDet family is refused with the reason.
set(D ${W}/data)
run(${CLI} synth --out ${D} --preset tiny --seed 2)
run(${CLI} train --data ${D} --modality flow --arch tridet --preset tiny --epochs 1 --quiet --out ${W}/td.safetensors)
run(${CLI} info ${W}/td.safetensors)
string(FIND "${LAST_OUT}" "tridet" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "info does not name the tridet family:\n${LAST_OUT}")
endif()
run(${CLI} detect --model ${W}/td.safetensors --data ${D} --split test --out ${W}/pred_td.json)
run(${CLI} eval --annotations ${D}/annotations.json --split test --pred ${W}/pred_td.json --json)
string(FIND "${LAST_OUT}" "average_mAP" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "eval printed no average_mAP:\n${LAST_OUT}")
endif()
run_fails("with the TriDet family is not supported" ${CLI} train --data ${D} --dcd --teacher ${W}/td.safetensors
          --arch tridet --preset tiny --epochs 1 --quiet --out ${W}/dcd.safetensors)
if(EXISTS ${W}/dcd.safetensors)
  message(FATAL_ERROR "a refused train wrote its --out file")
endif()
run_fails("the TriDet family does not support" ${CLI} experiment --arch tridet --seeds 1 --out ${W}/exp)
if(EXISTS ${W}/exp)
  message(FATAL_ERROR "a refused experiment created its --out folder")
endif()
message(STATUS "cli TriDet checkpoint ok")
