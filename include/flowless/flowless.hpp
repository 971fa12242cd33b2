// flowless/flowless.hpp - umbrella header: the tensor core, autograd and the
// differentiable ops. Heavier modules have their own entry headers:
//   flowless/models/model_file.hpp   detectors, reference checkpoints, model files
//   flowless/models/any_model.hpp    load any model file (detector or DCD student)
//   flowless/dcd/tasks.hpp           decomposed cross-modal distillation
//   flowless/workflow/training.hpp   training on a dataset folder
//   flowless/eval/detection_map.hpp  the reference mAP evaluator
#pragma once

#include "flowless/core/error.hpp"
#include "flowless/core/random.hpp"
#include "flowless/core/shape.hpp"
#include "flowless/core/tensor.hpp"
#include "flowless/core/thread_pool.hpp"
#include "flowless/autograd/variable.hpp"
#include "flowless/ops/activations.hpp"
#include "flowless/ops/conv1d.hpp"
#include "flowless/ops/elementwise.hpp"
#include "flowless/ops/layer_norm.hpp"
#include "flowless/ops/local_attention.hpp"
#include "flowless/ops/losses.hpp"
#include "flowless/ops/pooling.hpp"
