// The CUDA backend's op kernels, one registration function per kernel family (one .cu file or a
// few under the same stem). cuda::initialize() calls each to fill the DeviceKernels table that
// the op entry points forward to (core/device_kernels.h).
#pragma once

#include "core/device_kernels.h"

namespace shardlab::cuda {

void register_copy_kernels(DeviceKernels& k);          // copy_, fill_, copy_between_devices
void register_elementwise_kernels(DeviceKernels& k);   // arithmetic, math, comparisons, where, add_, mul_
void register_reduce_kernels(DeviceKernels& k);        // sum, mean, max, argmax, max_backward, softmax family, sum_of_squares
void register_loss_lookup_kernels(DeviceKernels& k);   // embedding (+ backward), cross-entropy (+ backward)
void register_llama_fused_kernels(DeviceKernels& k);   // rms_norm, rope, swiglu (forward and backward)
void register_optimizer_kernels(DeviceKernels& k);     // adamw_step, adamw_step_multi, sgd_step, 8-bit AdamW, blockwise (de)quantization
void register_nf4_kernels(DeviceKernels& k);           // nf4_quantize, nf4_absmax, nf4_dequantize, nf4_linear (+ backward)
void register_matmul_kernels(DeviceKernels& k);        // matmul through cuBLASLt
void register_attention_kernels(DeviceKernels& k);     // flash attention forward and backward

}  // namespace shardlab::cuda
