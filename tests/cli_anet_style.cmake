# `flowless detect` on ActionFormer's ActivityNet-style path with a reference
# checkpoint: feature files named "v_" + id, every video resampled to
# max_seq_len (force_upsampling), class-agnostic NMS, and the external
# classifier scores of test_cfg.ext_score_file fused into the detections;
# plus the errors a user hits there. Needs -DCLI, -DWORK_DIR and -DDATA (tests/data).
set(W ${WORK_DIR})
file(REMOVE_RECURSE ${W})
file(MAKE_DIRECTORY ${W}/feats)
include(${CMAKE_CURRENT_LIST_DIR}/cli_common.cmake)

set(F ${DATA}/actionformer_small)
set(EXT ${DATA}/anet_style/ext_scores.json)
file(READ ${F}/config.json cfg)
string(JSON cfg SET "${cfg}" dataset force_upsampling true)
string(JSON cfg SET "${cfg}" dataset file_prefix "\"v_\"")
string(JSON cfg SET "${cfg}" test_cfg multiclass_nms false)
string(JSON cfg SET "${cfg}" test_cfg ext_score_file "\"${EXT}\"")
file(WRITE ${W}/anet.json "${cfg}")
foreach(v vid00 vid01)
  configure_file(${F}/${v}.npy ${W}/feats/v_${v}.npy COPYONLY)
endforeach()

# Without fusion: the ids lose the file prefix; class-agnostic NMS keeps at most max_seg_num.
run(${CLI} detect --config ${W}/anet.json --weights ${F}/weights.safetensors --features ${W}/feats --no-ext-scores
    --out ${W}/plain.json)
file(READ ${W}/plain.json plain)
string(JSON n_plain LENGTH "${plain}" results vid00)
string(JSON n_plain1 LENGTH "${plain}" results vid01)
if(n_plain LESS 1 OR n_plain1 LESS 1)
  message(FATAL_ERROR "no detections for vid00 / vid01 without fusion:\n${plain}")
endif()

# With the config's ext_score_file: every kept segment once per top-2 class, the best class first.
run(${CLI} detect --config ${W}/anet.json --weights ${F}/weights.safetensors --features ${W}/feats --out ${W}/fused.json)
string(FIND "${LAST_OUT}" "fused the classifier scores" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "detect did not report the fusion:\n${LAST_OUT}")
endif()
file(READ ${W}/fused.json fused)
string(JSON n_fused LENGTH "${fused}" results vid00)
math(EXPR want "2 * ${n_plain}")
if(n_plain GREATER 200)
  set(want 400)
endif()
if(NOT n_fused EQUAL want)
  message(FATAL_ERROR "vid00: ${n_fused} fused detections, expected ${want} (2 x ${n_plain})")
endif()
file(READ ${EXT} ext)
string(JSON nc LENGTH "${ext}" results vid00)
set(best 0)
string(JSON best_score GET "${ext}" results vid00 0)
math(EXPR last "${nc} - 1")
foreach(c RANGE 1 ${last})
  string(JSON s GET "${ext}" results vid00 ${c})
  if(s GREATER best_score)
    set(best ${c})
    set(best_score ${s})
  endif()
endforeach()
string(JSON label0 GET "${fused}" results vid00 0 label_id)
if(NOT label0 EQUAL best)
  message(FATAL_ERROR "vid00: the first fused detection has label ${label0}, the classifier's best class is ${best}")
endif()
# --ext-scores overrides the config's file.
file(WRITE ${W}/other.json "{\"results\": {\"vid00\": [0.1, 0.9], \"vid01\": [0.8, 0.2]}}")
run(${CLI} detect --config ${W}/anet.json --weights ${F}/weights.safetensors --features ${W}/feats --ext-scores
    ${W}/other.json --out ${W}/fused2.json)
file(READ ${W}/fused2.json fused2)
string(JSON label0 GET "${fused2}" results vid00 0 label_id)
string(JSON label1 GET "${fused2}" results vid01 0 label_id)
if(NOT label0 EQUAL 1 OR NOT label1 EQUAL 0)
  message(FATAL_ERROR "--ext-scores: first labels ${label0} / ${label1}, expected 1 / 0")
endif()

# Errors name the file and the problem, and write no predictions.
file(WRITE ${W}/lacking.json "{\"results\": {\"vid00\": [0.5, 0.5]}}")
run_fails("no classifier scores for video 'vid01'" ${CLI} detect --config ${W}/anet.json --weights
          ${F}/weights.safetensors --features ${W}/feats --ext-scores ${W}/lacking.json --out ${W}/bad.json)
run_fails("${W}/nothing.json" ${CLI} detect --config ${W}/anet.json --weights ${F}/weights.safetensors --features
          ${W}/feats --ext-scores ${W}/nothing.json --out ${W}/bad.json)
file(WRITE ${W}/ann.json "{\"database\": {\"vid00\": {\"subset\": \"validation\", \"duration\": 40.5, \"annotations\": []}}}")
run_fails("has no video 'vid01'" ${CLI} detect --config ${W}/anet.json --weights ${F}/weights.safetensors --features
          ${W}/feats --annotations ${W}/ann.json --out ${W}/bad.json)
run_fails("not both" ${CLI} detect --config ${W}/anet.json --weights ${F}/weights.safetensors --features ${W}/feats
          --ext-scores ${W}/other.json --no-ext-scores --out ${W}/bad.json)
# Fixed-length features (feat_stride <= 0) need the annotations' durations.
string(JSON cfg0 SET "${cfg}" dataset feat_stride 0)
file(WRITE ${W}/fixed.json "${cfg0}")
run_fails("need the video's duration and fps (from the annotations)" ${CLI} detect --config ${W}/fixed.json --weights
          ${F}/weights.safetensors --features ${W}/feats --no-ext-scores --out ${W}/bad.json)
file(WRITE ${W}/ann2.json "{\"database\": {\"vid00\": {\"subset\": \"validation\", \"duration\": 40.5, \"fps\": 30, \"annotations\": []}, \"vid01\": {\"subset\": \"validation\", \"duration\": 102.9, \"fps\": 30, \"annotations\": []}}}")
run(${CLI} detect --config ${W}/fixed.json --weights ${F}/weights.safetensors --features ${W}/feats --no-ext-scores
    --annotations ${W}/ann2.json --out ${W}/fixed_pred.json)
file(READ ${W}/fixed_pred.json fixed_pred)
string(JSON end0 GET "${fixed_pred}" results vid00 0 segment 1)
if(end0 GREATER 40.5)
  message(FATAL_ERROR "vid00: a segment ends at ${end0} s, after the annotated duration 40.5 s")
endif()
if(EXISTS ${W}/bad.json)
  message(FATAL_ERROR "a failed detect wrote its --out file")
endif()

# The ActivityNet-style fixture of the reference code (actionformer_anet_small:
# absolute PE, a global top level, one class, voting): `detect` on its
# force_upsampling config keeps as many detections per video as the reference
# did (the suite's test_anet_style compares every value).
set(A ${DATA}/actionformer_anet_small)
file(READ ${A}/expected_detections.json aexp)
file(MAKE_DIRECTORY ${W}/afeats)
foreach(v vid00 vid01)
  configure_file(${A}/${v}.npy ${W}/afeats/${v}.npy COPYONLY)
endforeach()
write_annotations(${W}/aann.json ${A}/expected_detections.json validation vid00 vid01)
run(${CLI} detect --config ${A}/config.json --weights ${A}/weights.safetensors --features ${W}/afeats
    --annotations ${W}/aann.json --out ${W}/anet_pred.json)
file(READ ${W}/anet_pred.json apred)
foreach(v vid00 vid01)
  string(JSON n_ref LENGTH "${aexp}" ${v} detections)
  string(JSON n_got LENGTH "${apred}" results ${v})
  string(JSON top_ref GET "${aexp}" ${v} detections 0 score)
  string(JSON top_got GET "${apred}" results ${v} 0 score)
  if(NOT n_got EQUAL n_ref)
    message(FATAL_ERROR "${v}: ${n_got} detections, the reference kept ${n_ref}")
  endif()
  message(STATUS "${v}: ${n_got} detections as the reference; top score ${top_got} (reference ${top_ref})")
endforeach()
message(STATUS "cli ActivityNet-style path ok")
