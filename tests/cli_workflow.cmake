# The command-line workflow on the tiny synthetic data: synth -> train (flow
# teacher, RGB detector, DCD student, plain-KD baseline, TemporalMaxer) ->
# detect -> eval -> info, plus the error paths a user hits first.
set(W ${WORK_DIR})
file(REMOVE_RECURSE ${W})
file(MAKE_DIRECTORY ${W})
include(${CMAKE_CURRENT_LIST_DIR}/cli_common.cmake)

set(D ${W}/tiny)
run(${CLI} synth --out ${D} --preset tiny --seed 11)
run(${CLI} train --data ${D} --modality flow --preset tiny --epochs 1 --quiet --out ${W}/flow.safetensors)
run(${CLI} train --data ${D} --modality rgb --preset tiny --epochs 1 --quiet --val-split test --out ${W}/rgb.safetensors)
run(${CLI} train --data ${D} --dcd --teacher ${W}/flow.safetensors --preset tiny --epochs 1 --quiet --out ${W}/dcd.safetensors)
run(${CLI} train --data ${D} --dcd --fusion concat --teacher ${W}/flow.safetensors --preset tiny --epochs 1 --quiet --out ${W}/dcd_concat.safetensors)
run(${CLI} train --data ${D} --kd-plain --teacher ${W}/flow.safetensors --preset tiny --epochs 1 --quiet --out ${W}/kd.safetensors)
run(${CLI} train --data ${D} --modality two-stream --arch temporalmaxer --preset tiny --epochs 1 --quiet --out ${W}/tm.safetensors)
foreach(m rgb dcd kd tm)
  run(${CLI} detect --model ${W}/${m}.safetensors --data ${D} --split test --out ${W}/pred_${m}.json)
  run(${CLI} eval --annotations ${D}/annotations.json --split test --pred ${W}/pred_${m}.json --json)
  string(FIND "${LAST_OUT}" "average_mAP" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "eval printed no average_mAP:\n${LAST_OUT}")
  endif()
endforeach()
# Where the student's false positives go (DETAD's analysis), as a table and in the JSON.
run(${CLI} eval --annotations ${D}/annotations.json --split test --pred ${W}/pred_dcd.json --errors)
foreach(want "false-positive analysis (DETAD)" "localization" "avg-mAP gain if removed")
  string(FIND "${LAST_OUT}" "${want}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "eval --errors printed no '${want}':\n${LAST_OUT}")
  endif()
endforeach()
run(${CLI} eval --annotations ${D}/annotations.json --split test --pred ${W}/pred_dcd.json --errors --errors-limit 0 --json)
string(FIND "${LAST_OUT}" "\"false_positives\"" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "eval --errors --json has no false_positives:\n${LAST_OUT}")
endif()
run_fails("limit_factor -1" ${CLI} eval --annotations ${D}/annotations.json --pred ${W}/pred_dcd.json --errors --errors-limit -1)
# A student given a two-stream feature file reads its RGB channels (an RGB-only array: test_dcd.cpp).
run(${CLI} detect --model ${W}/dcd.safetensors --features ${D}/features/video_test_0000001.npy --out ${W}/one.json)
run(${CLI} info ${W}/dcd.safetensors)
# The distillation weights a run used are in its file: the task's defaults when not given.
string(FIND "${LAST_OUT}" "\"lambda_f\":0.5,\"lambda_p\":0.5" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "info of dcd.safetensors lacks the default weights lambda_f 0.5, lambda_p 0.5:\n${LAST_OUT}")
endif()
run(${CLI} info ${W}/kd.safetensors)
string(FIND "${LAST_OUT}" "kd_training: {\"lambda_f\":0.25}" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "info of kd.safetensors lacks the default weight lambda_f 0.25:\n${LAST_OUT}")
endif()
# The analysis heads of a student; a detector file has none.
run(${CLI} detect --model ${W}/dcd.safetensors --data ${D} --split test --head motion --out ${W}/pred_dcd_motion.json)
run_fails("needs a DCD student file" ${CLI} detect --model ${W}/rgb.safetensors --data ${D} --head motion --out ${W}/h.json)
run(${CLI} info ${W}/rgb.safetensors)
# The log of a validated run has mAP per epoch.
file(READ ${W}/rgb.safetensors.log.json log)
string(FIND "${log}" "val_average_mAP" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "training log without validation mAP:\n${log}")
endif()
# Synthetic configs from JSON: `synth --config` overrides preset fields, and
# `experiment --synth-config` reuses a data folder only if it was made from the same config.
file(WRITE ${W}/synth_cfg.json "{\"preset\": \"tiny\", \"num_train_videos\": 6, \"leak_amp\": 0.4}")
run(${CLI} synth --out ${W}/tiny_cfg --config ${W}/synth_cfg.json --seed 3)
file(GLOB train_vids ${W}/tiny_cfg/features/video_validation_*.npy)
list(LENGTH train_vids n_train)
if(NOT n_train EQUAL 6)
  message(FATAL_ERROR "synth --config: expected 6 training videos, found ${n_train}")
endif()
file(READ ${W}/tiny_cfg/synth.json synth_json)
string(FIND "${synth_json}" "\"leak_amp\": 0.4" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "synth --config: leak_amp not in synth.json:\n${synth_json}")
endif()
run(${CLI} experiment --out ${W}/exp --preset tiny --synth-config ${W}/synth_cfg.json --model-preset tiny --epochs 1
    --seeds 1 --variants rgb --threads 1)
string(FIND "${LAST_OUT}" "| rgb | 1 |" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "experiment printed no rgb row:\n${LAST_OUT}")
endif()
run_fails("another config" ${CLI} experiment --out ${W}/exp --preset tiny --model-preset tiny --epochs 1 --seeds 1
          --variants rgb --threads 1)
# A DCD ablation variant: options after the name, its own files next to the plain variant's.
run(${CLI} experiment --out ${W}/exp --preset tiny --synth-config ${W}/synth_cfg.json --model-preset tiny --epochs 1
    --seeds 1 --variants rgb dcd-laf:window=3,residual=1 --threads 1)
string(FIND "${LAST_OUT}" "| dcd-laf:window=3,residual=1 | 1 |" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "experiment printed no row for the ablation variant:\n${LAST_OUT}")
endif()
# ... and its paired difference against rgb, seed by seed (one seed here).
string(REGEX MATCH "\\| dcd-laf:window=3,residual=1 − rgb \\| [-+][0-9]+\\.[0-9][0-9] ± 0\\.00 \\([01] of 1\\) \\|" paired_row "${LAST_OUT}")
if(NOT paired_row)
  message(FATAL_ERROR "experiment printed no paired row for the ablation variant against rgb:\n${LAST_OUT}")
endif()
# ... and where each variant's false positives go (DETAD's analysis, stored in each run's result).
string(REGEX MATCH "False positives \\(DETAD[^\n]*\n\n[^\n]*\n[^\n]*\n\\| rgb \\| 1 \\| [0-9.]+ \\| [0-9.]+ \\(\\+[0-9.]+\\)" fp_row "${LAST_OUT}")
if(NOT fp_row)
  message(FATAL_ERROR "experiment printed no false-positive table with an rgb row:\n${LAST_OUT}")
endif()
# A result written before the analysis existed gets it added when the experiment reuses it.
file(READ ${W}/exp/seed1/rgb.result.json rgb_result)
string(JSON rgb_result REMOVE "${rgb_result}" false_positives)
file(WRITE ${W}/exp/seed1/rgb.result.json "${rgb_result}")
run(${CLI} experiment --out ${W}/exp --preset tiny --synth-config ${W}/synth_cfg.json --model-preset tiny --epochs 1
    --seeds 1 --variants rgb --threads 1)
file(READ ${W}/exp/seed1/rgb.result.json rgb_result)
string(JSON fp_n GET "${rgb_result}" false_positives num_predictions)
if(fp_n LESS 1)
  message(FATAL_ERROR "the reused rgb result did not get its false-positive analysis back:\n${rgb_result}")
endif()
file(READ ${W}/exp/seed1/dcd-laf_window3_residual1.safetensors.log.json ablation_log)
run(${CLI} info ${W}/exp/seed1/dcd-laf_window3_residual1.safetensors)
string(FIND "${LAST_OUT}" "\"residual\": true" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "info of the ablation student shows no residual LAF:\n${LAST_OUT}")
endif()
# A reused file must have been trained with the weights the variant asks for (defaults change).
run(${CLI} train --data ${W}/exp/data --dcd --fusion concat --teacher ${W}/exp/seed1/flow.safetensors --preset tiny
    --epochs 1 --quiet --lambda-f 2 --out ${W}/exp/seed1/dcd-concat.safetensors)
run_fails("dcd-concat.safetensors: was trained with lambda_f 2, lambda_p 0.5, this run asks for 0.5, 0.5" ${CLI}
          experiment --out ${W}/exp --preset tiny --synth-config ${W}/synth_cfg.json --model-preset tiny --epochs 1
          --seeds 1 --variants rgb dcd-concat --threads 1)
run(${CLI} experiment --out ${W}/exp --preset tiny --synth-config ${W}/synth_cfg.json --model-preset tiny --epochs 1
    --seeds 1 --variants rgb dcd-concat:lambda_f=2 --threads 1)
# With the model file deleted, the result file's own record decides (written since session 14).
file(READ ${W}/exp/seed1/dcd-concat_lambda_f2.result.json concat_result)
string(JSON lf GET "${concat_result}" distillation_weights lambda_f)
if(NOT lf EQUAL 2)
  message(FATAL_ERROR "the result file does not record lambda_f 2:\n${concat_result}")
endif()
file(COPY_FILE ${W}/exp/seed1/dcd-concat_lambda_f2.result.json ${W}/exp/seed1/dcd-concat.result.json)
file(REMOVE ${W}/exp/seed1/dcd-concat.safetensors)
run_fails("dcd-concat.result.json: was trained with lambda_f 2, lambda_p 0.5, this run asks for 0.5, 0.5" ${CLI}
          experiment --out ${W}/exp --preset tiny --synth-config ${W}/synth_cfg.json --model-preset tiny --epochs 1
          --seeds 1 --variants rgb dcd-concat --threads 1)
string(JSON concat_result REMOVE "${concat_result}" distillation_weights)
file(WRITE ${W}/exp/seed1/dcd-concat.result.json "${concat_result}")
run_fails("dcd-concat.result.json: has no record of its distillation weights (written before session 14" ${CLI}
          experiment --out ${W}/exp --preset tiny --synth-config ${W}/synth_cfg.json --model-preset tiny --epochs 1
          --seeds 1 --variants rgb dcd-concat --threads 1)
file(REMOVE ${W}/exp/seed1/dcd-concat.result.json)
run_fails("unknown option 'windw'" ${CLI} experiment --out ${W}/exp --preset tiny --synth-config ${W}/synth_cfg.json
          --model-preset tiny --epochs 1 --seeds 1 --variants dcd-laf:windw=3 --threads 1)
run_fails("applies to dcd-laf variants only" ${CLI} experiment --out ${W}/exp --preset tiny --synth-config ${W}/synth_cfg.json
          --model-preset tiny --epochs 1 --seeds 1 --variants dcd-concat:window=3 --threads 1)
# The DCD flags of train: LAF options and the gradient switch reach the student; bad values and misuse fail.
run(${CLI} train --data ${D} --dcd --teacher ${W}/flow.safetensors --preset tiny --epochs 1 --quiet --laf-window 3
    --laf-aggregation max --laf-norm --no-joint-grad --branch-dim 16 --branch-weight 0.5 --out ${W}/dcd_opts.safetensors)
run(${CLI} info ${W}/dcd_opts.safetensors)
foreach(want "\"window\": 3" "\"aggregation\": \"max\"" "\"norm\": true" "\"branch_dim\": 16" "joint_grad")
  string(FIND "${LAST_OUT}" "${want}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "info of dcd_opts.safetensors lacks ${want}:\n${LAST_OUT}")
  endif()
endforeach()
run_fails("window must be odd" ${CLI} train --data ${D} --dcd --teacher ${W}/flow.safetensors --preset tiny --epochs 1
          --quiet --laf-window 4 --out ${W}/bad.safetensors)
run_fails("apply to --dcd only" ${CLI} train --data ${D} --modality rgb --preset tiny --epochs 1 --quiet --laf-window 3
          --out ${W}/bad.safetensors)
run_fails("--lambda-f must be a finite number >= 0" ${CLI} train --data ${D} --dcd --teacher ${W}/flow.safetensors
          --preset tiny --epochs 1 --quiet --lambda-f -1 --out ${W}/bad.safetensors)
run_fails("--lambda-p applies to --dcd only" ${CLI} train --data ${D} --kd-plain --teacher ${W}/flow.safetensors
          --preset tiny --epochs 1 --quiet --lambda-p 1 --out ${W}/bad.safetensors)
run_fails("apply to --dcd and --kd-plain only" ${CLI} train --data ${D} --modality rgb --preset tiny --epochs 1 --quiet
          --lambda-f 1 --out ${W}/bad.safetensors)
# ActivityNet's resampling (force_upsampling) is an inference path only.
file(WRITE ${W}/anet_train.json "{\"dataset\": {\"force_upsampling\": true}}")
run_fails("supported at inference only" ${CLI} train --data ${D} --modality rgb --preset tiny --epochs 1 --quiet
          --config ${W}/anet_train.json --out ${W}/bad.safetensors)
# TemporalMaxer's own config trains with its SimOTA assigner (model.assigner),
# which the model file keeps; the distillation tasks assign by center sampling
# and refuse it instead of replacing it silently.
file(WRITE ${W}/tm_train.json "{\"model_name\": \"TemporalMaxerArchitecture\", \"model\": {\"backbone_type\": \"convPooler\", \"backbone_arch\": [2, 5], \"embd_dim\": 32, \"fpn_dim\": 32, \"head_dim\": 32, \"assigner\": {\"iou_weight\": 2, \"center_radius\": 1.5, \"keep_percent\": 1.0, \"confuse_weight\": 0.0}}}")
run(${CLI} train --data ${D} --modality rgb --epochs 2 --quiet --config ${W}/tm_train.json --out ${W}/tm.safetensors)
run(${CLI} info ${W}/tm.safetensors)
foreach(key "\"assigner\"" "\"keep_percent\": 1" "\"iou_weight\": 2")
  string(FIND "${LAST_OUT}" "${key}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "info of the SimOTA-trained model lacks ${key}:\n${LAST_OUT}")
  endif()
endforeach()
run(${CLI} detect --model ${W}/tm.safetensors --data ${D} --out ${W}/tm_dets.json)
run_fails("assigns labels by center sampling" ${CLI} train --data ${D} --dcd --teacher ${W}/flow.safetensors
          --epochs 1 --quiet --config ${W}/tm_train.json --out ${W}/bad.safetensors)
if(EXISTS ${W}/bad.safetensors)
  message(FATAL_ERROR "a refused train wrote its --out file")
endif()
file(WRITE ${W}/garbage_cfg.json "{\"leak\": 1}")
run_fails("unknown synthetic dataset field" ${CLI} synth --out ${W}/bad_cfg --config ${W}/garbage_cfg.json)
# check: reads every file of a dataset, reports what training will see, and warns about stray segments.
run(${CLI} check --data ${D})
string(FIND "${LAST_OUT}" "20 video(s) read, 0 warning(s)" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "check of the tiny dataset:\n${LAST_OUT}")
endif()
file(COPY ${D}/features ${D}/dataset.json DESTINATION ${W}/stray)
file(READ ${D}/annotations.json ann)
string(JSON v0 MEMBER "${ann}" database 0)
string(JSON ann SET "${ann}" database ${v0} annotations 0 segment 1 9999)
file(WRITE ${W}/stray/annotations.json "${ann}")
run(${CLI} check --data ${W}/stray)
string(FIND "${LAST_OUT}" "segment(s) of video '${v0}' reach beyond its features" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "check did not warn about the segment beyond the video:\n${LAST_OUT}")
endif()
file(WRITE ${W}/stray/features/${v0}.npy "not an array")
run_fails("${v0}.npy" ${CLI} check --data ${W}/stray)
# Errors name the file and the problem.
run_fails("missing.npy" ${CLI} detect --model ${W}/rgb.safetensors --features ${W}/missing.npy --out ${W}/x.json)
run_fails("--annotations goes with --features" ${CLI} detect --model ${W}/rgb.safetensors --data ${D}
          --annotations ${D}/annotations.json --out ${W}/x.json)
run_fails("annotations.json" ${CLI} eval --annotations ${W}/nothing/annotations.json --pred ${W}/pred_rgb.json)
run_fails("needs --teacher" ${CLI} train --data ${D} --dcd --out ${W}/y.safetensors)
file(WRITE ${W}/garbage.safetensors "not a model")
run_fails("garbage.safetensors" ${CLI} detect --model ${W}/garbage.safetensors --data ${D} --out ${W}/z.json)
message(STATUS "cli workflow ok")
