// The raw op API: device-dispatching kernels without autograd (namespace shardlab::ops).
// Users normally call the differentiable versions in autograd/functions.h; optimizers and
// backward rules call these directly. One header per op family under core/ops/.
#pragma once

#include "core/ops/elementwise.h"
#include "core/ops/fused.h"
#include "core/ops/linalg.h"
#include "core/ops/optim.h"
#include "core/ops/optim_8bit.h"
#include "core/ops/reduce.h"
#include "core/ops/views.h"
