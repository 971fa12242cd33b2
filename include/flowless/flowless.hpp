// flowless/flowless.hpp - umbrella header: the tensor core and autograd.
// Heavier modules (models, training, data, evaluation) have their own
// umbrella headers so that including this one stays cheap.
#pragma once

#include "flowless/core/error.hpp"
#include "flowless/core/random.hpp"
#include "flowless/core/shape.hpp"
#include "flowless/core/tensor.hpp"
#include "flowless/core/thread_pool.hpp"
#include "flowless/autograd/variable.hpp"
#include "flowless/ops/conv1d.hpp"
