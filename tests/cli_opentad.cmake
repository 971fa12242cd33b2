# OpenTAD checkpoints from the command line (tests/data/opentad_small, written
# by OpenTAD's own code): `flowless detect` with its Python config and its
# training checkpoint (ActionFormer, TemporalMaxer, TriDet) keeps as many detections per video as OpenTAD and the
# same best label; `flowless convert` turns them into one flowless model file
# (with class names) that detects the same; configs flowless cannot read or
# run are refused naming the file, and nothing is written. Needs -DCLI,
# -DWORK_DIR and -DDATA.
set(W ${WORK_DIR})
file(REMOVE_RECURSE ${W})
include(${CMAKE_CURRENT_LIST_DIR}/cli_common.cmake)

set(F ${DATA}/opentad_small/actionformer)
detect_like_reference(${F} ${W} ${F}/config.py ${F}/weights.pth vid00 vid01 vid02)
file(READ ${W}/pred.json pred_cfg)

# OpenTAD's TemporalMaxer runs unpadded; its TriDet decodes unmasked boundary logits.
set(O ${DATA}/opentad_small)
detect_like_reference(${O}/temporalmaxer ${W}/tm ${O}/temporalmaxer/config.py ${O}/temporalmaxer/weights.pth
                      vid00 vid01 vid03)
detect_like_reference(${O}/tridet ${W}/td ${O}/tridet/config.py ${O}/tridet/weights.pth vid00 vid01 vid02)

# One model file, config and class names inside; detect needs nothing else.
file(WRITE ${W}/category_idx.txt "Alpha\nBeta\nGamma\nDelta\nEpsilon\n")
run(${CLI} convert --config ${F}/config.py --weights ${F}/weights.pth --class-names ${W}/category_idx.txt
    --out ${W}/ot.safetensors)
run(${CLI} info ${W}/ot.safetensors)
foreach(want "arch actionformer" "conv_remask" "pre_nms_scope" "Gamma")
  string(FIND "${LAST_OUT}" "${want}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "info of the converted file lacks '${want}':\n${LAST_OUT}")
  endif()
endforeach()
run(${CLI} detect --model ${W}/ot.safetensors --features ${W}/feats --annotations ${W}/ann.json
    --out ${W}/pred_model.json)
file(READ ${W}/pred_model.json pred_model)
foreach(v vid00 vid01 vid02)
  string(JSON n_cfg LENGTH "${pred_cfg}" results ${v})
  string(JSON n_model LENGTH "${pred_model}" results ${v})
  string(JSON s_cfg GET "${pred_cfg}" results ${v} 0 score)
  string(JSON s_model GET "${pred_model}" results ${v} 0 score)
  string(JSON label GET "${pred_model}" results ${v} 0 label)
  if(NOT n_cfg EQUAL n_model OR NOT s_cfg STREQUAL s_model)
    message(FATAL_ERROR "${v}: the converted file gives ${n_model} detections (best ${s_model}), "
                        "config + checkpoint ${n_cfg} (best ${s_cfg})")
  endif()
  if(label STREQUAL "" OR label MATCHES "^[0-9]+$")
    message(FATAL_ERROR "${v}: the best detection's label '${label}' is not a class name")
  endif()
endforeach()

# Refusals name the file and the problem; no output file appears.
file(WRITE ${W}/imports.py "import os\nmodel = dict(type='ActionFormer')\n")
run_fails("imports.py: line 1" ${CLI} convert --config ${W}/imports.py --weights ${F}/weights.pth --out ${W}/bad1.safetensors)
file(READ ${F}/config.py cfg)
string(REPLACE "_base_ = [\"../base_dataset.py\", \"base_model.py\"]"
       "_base_ = [\"${DATA}/opentad_small/base_dataset.py\", \"${F}/base_model.py\"]" cfg "${cfg}")
file(WRITE ${W}/bmn.py "${cfg}\nmodel = dict(type=\"BMN\")\n")
run_fails("ActionFormer, TemporalMaxer and TriDet are supported" ${CLI} detect --config ${W}/bmn.py
          --weights ${F}/weights.pth --features ${W}/feats --annotations ${W}/ann.json --out ${W}/bad2.json)
file(WRITE ${W}/four.txt "a\nb\nc\nd\n")
run_fails("4 class names for a model of 5 classes" ${CLI} convert --config ${F}/config.py --weights ${F}/weights.pth
          --class-names ${W}/four.txt --out ${W}/bad3.safetensors)
# Training from OpenTAD's TriDet config is refused with the reason; its
# TemporalMaxer config trains with the SimOTA assigner of its rpn_head.
run(${CLI} synth --out ${W}/data --preset tiny --seed 2)
run_fails("is supported at inference only" ${CLI} train --data ${W}/data --modality flow
          --config ${O}/tridet/config.py --epochs 1 --quiet --out ${W}/bad4.safetensors)
# Its recipe is the config's (optimizer, scheduler, solver) except where the
# command line says otherwise (here: 1 epoch, no warmup).
run(${CLI} train --data ${W}/data --modality flow --config ${O}/temporalmaxer/config.py --epochs 1
    --warmup-epochs 0 --quiet --out ${W}/tm_trained.safetensors)
run(${CLI} info ${W}/tm_trained.safetensors)
foreach(key "\"confuse_weight\": 0" "temporalmaxer/config.py (OpenTAD)" "\"weight_decay\":0.05" "\"batch_size\":2")
  string(FIND "${LAST_OUT}" "${key}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "info of the trained OpenTAD TemporalMaxer lacks ${key}:\n${LAST_OUT}")
  endif()
endforeach()
foreach(f bad1.safetensors bad2.json bad3.safetensors bad4.safetensors)
  if(EXISTS ${W}/${f})
    message(FATAL_ERROR "a failed command wrote ${f}")
  endif()
endforeach()
message(STATUS "cli OpenTAD checkpoint ok")
