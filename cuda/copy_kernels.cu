// CUDA kernels of the copy family behind the op API (see cuda/kernel_registry.h): copy_ (any
// layout, dtype conversion, broadcast source), fill_, and copy_between_devices behind Tensor::to.
#include <cmath>
#include <type_traits>

#include "core/checks.h"
#include "cuda/elementwise_launch.cuh"
#include "cuda/kernel_registry.h"
#include "cuda/stream.h"

namespace shardlab::cuda {

namespace {

template <typename T>
inline constexpr bool is_16bit_float_v = std::is_same_v<T, __nv_bfloat16> || std::is_same_v<T, __half>;

// To from From as core/strided.h's convert does on the CPU: 16-bit floats go through f32 (so
// f64 -> bf16 and i64 -> bf16 round twice, exactly like the CPU), everything else is a cast.
template <typename To, typename From>
__host__ __device__ inline To convert_value(From v) {
  if constexpr (std::is_same_v<To, From>) return v;
  else if constexpr (is_16bit_float_v<From>) return convert_value<To>(to_acc(v));
  else if constexpr (is_16bit_float_v<To>) return from_acc<To>(static_cast<float>(v));
  else return static_cast<To>(v);
}

template <typename D, typename S>
struct ConvertOp {
  __device__ D operator()(S s) const { return convert_value<D>(s); }
};

template <typename T>
struct FillOp {
  T value;
  __device__ T operator()() const { return value; }
};

void copy_(const Tensor& dst, const Tensor& src) {
  check_cuda_args("copy_", {dst, src});
  const Shape out = broadcast_shapes(dst.shape(), src.shape(), "copy_");
  SL_CHECK(out == dst.shape(), "copy_: source of shape ", shape_str(src.shape()),
           " cannot be broadcast to destination shape ", shape_str(dst.shape()));
  dst.bump_version();
  if (dst.numel() == 0) return;
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous() && src.shape() == dst.shape()) {
    SL_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), static_cast<size_t>(dst.nbytes()),
                                  cudaMemcpyDeviceToDevice, op_stream(dst.device())));
    return;
  }
  for (DType t : {dst.dtype(), src.dtype()})
    SL_CHECK(!traits(t).is_quantized, "copy_: dtype ", dtype_name(t), " has no element-wise kernels");
  if (dst.dtype() == src.dtype()) {
    // Same dtype: a bit copy dispatched on the element size (4 kernels instead of 8).
    dispatch_cuda_bits(dtype_size(dst.dtype()), "copy_", [&]<typename B>() {
      launch_elementwise<B>("copy_", dst, ConvertOp<B, B>{}, operand<B>(src));
    });
    return;
  }
  dispatch_cuda_numeric(dst.dtype(), "copy_", [&]<typename D>() {
    dispatch_cuda_numeric(src.dtype(), "copy_", [&]<typename S>() {
      if constexpr (!std::is_same_v<D, S>)  // same dtypes took the bit copy above
        launch_elementwise<D>("copy_", dst, ConvertOp<D, S>{}, operand<S>(src));
    });
  });
}

void fill_(const Tensor& dst, double value) {
  check_cuda_args("fill_", {dst});
  SL_CHECK(!traits(dst.dtype()).is_quantized, "fill_: dtype ", dtype_name(dst.dtype()), " has no element-wise kernels");
  dst.bump_version();
  if (dst.numel() == 0) return;
  // +0.0 is all-zero bits in every dtype: a memset.
  if (value == 0.0 && !std::signbit(value) && dst.is_contiguous()) {
    SL_CUDA_CHECK(cudaMemsetAsync(dst.raw_data(), 0, static_cast<size_t>(dst.nbytes()), op_stream(dst.device())));
    return;
  }
  dispatch_cuda_numeric(dst.dtype(), "fill_", [&]<typename T>() {
    // Converted once on the host as the CPU's from_double does (16-bit floats via f32, round to nearest even).
    launch_elementwise<T>("fill_", dst, FillOp<T>{convert_value<T>(value)});
  });
}

// The transfer behind Tensor::to. Pageable host memory and a synchronize per call for now: pinned
// staging buffers and event-ordered copy streams come with the runtime work (caching/pinned allocators).
void copy_between_devices(const Tensor& dst, const Tensor& src) {
  const char* op = "copy_between_devices";
  SL_CHECK(dst.defined() && src.defined(), op, ": undefined tensor");
  SL_CHECK(dst.device().is_cpu() != src.device().is_cpu(), op, ": exactly one side must be on the CPU, got ",
           src.device().str(), " -> ", dst.device().str());
  const Device gpu = dst.device().is_cpu() ? src.device() : dst.device();
  SL_CHECK(gpu.is_cuda(), op, ": the CUDA kernel got a ", gpu.str(), " tensor");
  check_same_dtype(op, dst, src);
  SL_CHECK(dst.shape() == src.shape(), op, ": shape mismatch: ", shape_str(src.shape()), " -> ",
           shape_str(dst.shape()));
  SL_CHECK(dst.is_contiguous() && src.is_contiguous(), op, ": both tensors must be contiguous (shape ",
           shape_str(dst.shape()), ")");
  dst.bump_version();
  const size_t bytes = static_cast<size_t>(dst.nbytes());
  if (bytes == 0) return;
  cudaStream_t stream = op_stream(gpu);
  // On the compute stream, so a device-to-host copy sees every kernel queued before it; the
  // synchronize makes the data visible to the host (and the host source reusable) on return.
  const cudaMemcpyKind kind = dst.device().is_cpu() ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice;
  SL_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes, kind, stream));
  SL_CUDA_CHECK(cudaStreamSynchronize(stream));
}

// A copy on the copy stream: complete when `done` is; holds both tensors until then.
class CopyStreamCopy final : public PendingCopy {
 public:
  CopyStreamCopy(Tensor dst, Tensor src) : dst_(std::move(dst)), src_(std::move(src)) {}
  ~CopyStreamCopy() override {
    try {
      wait();
    } catch (const Error&) {  // a destructor must not throw; the error surfaced elsewhere
    }
  }
  void wait() override {
    if (waited_) return;
    done_.synchronize();
    waited_ = true;
  }
  Event& done() { return done_; }

 private:
  Tensor dst_, src_;
  Event done_;
  bool waited_ = false;
};

// As copy_between_devices, but on the copy stream and without waiting: the copy starts after the
// work already queued on the compute stream (which produced a device source, or last used a device
// destination's block), and the host goes on at once when the host side is pinned.
PendingCopyHandle copy_between_devices_async(const Tensor& dst, const Tensor& src) {
  const char* op = "copy_between_devices_async";
  SL_CHECK(dst.device().is_cpu() != src.device().is_cpu(), op, ": exactly one side must be on the CPU, got ",
           src.device().str(), " -> ", dst.device().str());
  const Device gpu = dst.device().is_cpu() ? src.device() : dst.device();
  SL_CHECK(gpu.is_cuda(), op, ": the CUDA kernel got a ", gpu.str(), " tensor");
  check_same_dtype(op, dst, src);
  SL_CHECK(dst.shape() == src.shape() && dst.is_contiguous() && src.is_contiguous(), op,
           ": same shape, both contiguous required (", shape_str(src.shape()), " -> ", shape_str(dst.shape()), ")");
  SL_CUDA_CHECK(cudaSetDevice(gpu.index));  // the events belong to the copy's device
  auto copy = std::make_shared<CopyStreamCopy>(dst, src);
  const size_t bytes = static_cast<size_t>(dst.nbytes());
  if (bytes == 0) return copy;  // an event never recorded counts as complete
  cudaStream_t stream = copy_stream(gpu.index);
  Event ready;
  ready.record(compute_stream(gpu.index));
  ready.wait(stream);
  const cudaMemcpyKind kind = dst.device().is_cpu() ? cudaMemcpyDeviceToHost : cudaMemcpyHostToDevice;
  SL_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(), bytes, kind, stream));
  copy->done().record(stream);
  return copy;
}

}  // namespace

void register_copy_kernels(DeviceKernels& k) {
  k.copy_ = &copy_;
  k.fill_ = &fill_;
  k.copy_between_devices = &copy_between_devices;
  k.copy_between_devices_async = &copy_between_devices_async;
}

}  // namespace shardlab::cuda
