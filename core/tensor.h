// Tensor: a shared handle to (storage, shape, strides, offset, dtype) plus the slot autograd fills
// in. Views share storage. Everything here is data access and layout; the differentiable ops
// that users call live in autograd/functions.h, the raw device kernels in core/ops.h.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/storage.h"

namespace shardlab {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);  // "(2, 3)"

class Tensor;
class Node;  // autograd graph node; only autograd/ knows what it is.

// Autograd's per-tensor state. Core only carries it so that every view of the same TensorImpl
// sees one requires_grad/grad/grad_fn; autograd/ gives it meaning.
struct AutogradMeta;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;  // in elements
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  std::unique_ptr<AutogradMeta> autograd;
  ~TensorImpl();
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (the tag defaults to the current MemTagScope) ----
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  // As empty(), with memory from `allocator` instead of the device type's default (pinned host
  // memory for staging, say).
  static Tensor empty_with(Allocator& allocator, const Shape& shape, DType dtype, Device device);
  // A host tensor in pinned memory when a device backend provides it (pinned_host_allocator()),
  // else an ordinary one: for state that travels to and from a device every step (offload).
  static Tensor empty_pinned(const Shape& shape, DType dtype = DType::f32);
  bool is_pinned() const;
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor scalar(double value, DType dtype = DType::f32);
  static Tensor arange(int64_t n, DType dtype = DType::i64);
  // Copies `values` (converted to dtype) into a new CPU tensor of `shape`.
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape, DType dtype = DType::f32);
  static Tensor from_ints(const std::vector<int64_t>& values, const Shape& shape, DType dtype = DType::i64);
  // Seeded, counter-based random numbers: element i depends only on (seed, i), so the result is
  // the same whatever the thread count or the order of evaluation.
  static Tensor randn(const Shape& shape, uint64_t seed, DType dtype = DType::f32, double mean = 0.0, double stddev = 1.0);
  static Tensor rand(const Shape& shape, uint64_t seed, DType dtype = DType::f32, double low = 0.0, double high = 1.0);
  // A tensor over memory someone else owns (no copy, not in the ledger).
  static Tensor from_blob(void* data, const Shape& shape, DType dtype, Device device = Device::cpu(),
                          std::function<void(void*)> release = {});

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl()->shape; }
  const Shape& strides() const { return impl()->strides; }
  int64_t dim() const { return static_cast<int64_t>(impl()->shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t offset() const { return impl()->offset; }
  int64_t numel() const;
  DType dtype() const { return impl()->dtype; }
  Device device() const { return impl()->storage->device(); }
  bool is_contiguous() const;
  int64_t nbytes() const { return dtype_bytes(dtype(), numel()); }
  const std::shared_ptr<Storage>& storage() const { return impl()->storage; }
  MemTag tag() const { return impl()->storage->tag(); }
  void retag(MemTag tag) const { impl()->storage->retag(tag); }

  // Pointer to element [0, 0, ...] (storage base + offset), on the tensor's device.
  void* raw_data() const;
  // The same as a typed host pointer: CPU tensors only (device kernels take raw_data()), so host
  // code that would read device memory fails here, naming the device, instead of crashing.
  template <typename T>
  T* data() const {
    SL_CHECK(dtype_of<T> == dtype(), "data<", dtype_name(dtype_of<T>), ">() called on a ", dtype_name(dtype()),
             " tensor");
    SL_CHECK(device().is_cpu(), "data<", dtype_name(dtype_of<T>), ">() called on a tensor on ", device().str(),
             ": host code cannot read device memory (copy it with .to(Device::cpu()) first)");
    return static_cast<T*>(raw_data());
  }

  // A copy on `device` (this tensor itself when already there), contiguous, same dtype; what
  // PyTorch's .to(device) is. Device values are copied through the device's backend.
  Tensor to(Device device) const;

  // ---- values (read on the CPU; a device tensor is copied there first) ----
  double item() const;                       // the one element as double
  std::vector<double> to_double_vector() const;  // all elements in logical order
  std::vector<int64_t> to_int_vector() const;
  std::string str() const;                   // printed like torch: tensor([[...]], dtype=f32)

  // ---- versions: bumped by every in-place write, shared by views ----
  uint64_t version() const { return impl()->storage->version(); }
  void bump_version() const { impl()->storage->bump_version(); }

  // ---- autograd slot accessors (meaning given by autograd/) ----
  bool requires_grad() const;
  const Tensor& set_requires_grad(bool enabled) const;
  Tensor grad() const;
  void set_grad(const Tensor& grad) const;
  AutogradMeta* autograd_meta() const { return impl()->autograd.get(); }
  AutogradMeta& ensure_autograd_meta() const;

  TensorImpl* impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;     // null for leaves
  uint32_t output_nr = 0;            // which output of grad_fn this tensor is
  std::weak_ptr<Node> grad_accumulator;  // leaves: the node that writes .grad (made on demand)
  // Leaves: called after .grad has been accumulated for this backward (DDP hangs off these).
  std::vector<std::function<void(const Tensor&)>> grad_ready_hooks;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Contiguous strides for a shape.
Shape contiguous_strides(const Shape& shape);
// Normalises a possibly negative dim against `ndim` (use ndim+1 for unsqueeze); names `op` in errors.
int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op);
int64_t shape_numel(const Shape& shape);
// The broadcast of two shapes (numpy rules), or an error naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace shardlab
