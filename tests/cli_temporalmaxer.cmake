# `flowless detect` on a TemporalMaxer checkpoint with TemporalMaxer's own
# config (tests/data/temporalmaxer_small, from the reference code): the same
# number of detections per video as the reference, the same best detection,
# and a broken config named in the error. Needs -DCLI, -DWORK_DIR and -DDATA.
set(W ${WORK_DIR})
file(REMOVE_RECURSE ${W})
include(${CMAKE_CURRENT_LIST_DIR}/cli_common.cmake)

set(F ${DATA}/temporalmaxer_small)
detect_like_reference(${F} ${W} ${F}/config.json ${F}/weights.safetensors vid00 vid01 vid02)

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
