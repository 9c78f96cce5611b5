// Tensor factories, layout queries and value accessors.
#include "core/tensor.h"

#include "core/trace.h"

#include <cstring>
#include <sstream>

#include "core/device_kernels.h"
#include "core/random.h"
#include "core/strided.h"

namespace shardlab {

TensorImpl::~TensorImpl() = default;

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t s = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    strides[d] = s;
    s *= std::max<int64_t>(shape[d], 1);
  }
  return strides;
}

int64_t wrap_dim(int64_t dim, int64_t ndim, const char* op) {
  int64_t d = dim < 0 ? dim + ndim : dim;
  SL_CHECK(d >= 0 && d < std::max<int64_t>(ndim, 1), op, ": dim ", dim, " is out of range for a tensor of ",
           ndim, " dims");
  return d;
}

int64_t shape_numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    SL_CHECK(da == db || da == 1 || db == 1, op, ": shapes ", shape_str(a), " and ", shape_str(b),
             " cannot be broadcast together");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

TensorImpl* Tensor::impl() const {
  SL_CHECK(impl_ != nullptr, "use of an undefined tensor");
  return impl_.get();
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }
int64_t Tensor::numel() const { return shape_numel(shape()); }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int64_t d = dim() - 1; d >= 0; --d) {
    if (shape()[d] == 1) continue;
    if (strides()[d] != expected) return false;
    expected *= shape()[d];
  }
  return true;
}

void* Tensor::raw_data() const {
  auto* base = static_cast<char*>(impl()->storage->data());
  return base + dtype_bytes(dtype(), offset());
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  return empty_with(*allocator_for(device.type), shape, dtype, device);
}

Tensor Tensor::empty_with(Allocator& allocator, const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape) SL_CHECK(s >= 0, "empty: negative size in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(dtype_bytes(dtype, shape_numel(shape))), device,
                                            MemTagScope::current(), &allocator);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::empty_pinned(const Shape& shape, DType dtype) {
  Allocator* pinned = pinned_host_allocator();
  return pinned != nullptr ? empty_with(*pinned, shape, dtype, Device::cpu()) : empty(shape, dtype, Device::cpu());
}

bool Tensor::is_pinned() const {
  return defined() && pinned_host_allocator() != nullptr && storage()->allocator() == pinned_host_allocator();
}

Tensor Tensor::from_blob(void* data, const Shape& shape, DType dtype, Device device,
                         std::function<void(void*)> release) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(data, static_cast<size_t>(dtype_bytes(dtype, shape_numel(shape))),
                                            device, std::move(release));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

namespace {
// Fills a fresh contiguous CPU tensor with value_of(i) for each element i.
template <typename F>
Tensor make_filled(const Shape& shape, DType dtype, F value_of) {
  Tensor t = Tensor::empty(shape, dtype);
  const int64_t n = t.numel();
  dispatch_numeric(dtype, "tensor factory", [&]<typename T>() {
    T* p = t.data<T>();
#pragma omp parallel for if (n > 65536)
    for (int64_t i = 0; i < n; ++i) p[i] = from_double<T>(value_of(i));
  });
  return t;
}
}  // namespace

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) { return full(shape, 0.0, dtype, device); }
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) { return full(shape, 1.0, dtype, device); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  if (!device.is_cpu()) {
    Tensor t = empty(shape, dtype, device);
    ops::fill_(t, value);
    return t;
  }
  if (value == 0.0) {
    Tensor t = empty(shape, dtype, device);
    std::memset(t.raw_data(), 0, static_cast<size_t>(t.nbytes()));
    return t;
  }
  return make_filled(shape, dtype, [value](int64_t) { return value; });
}

Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

Tensor Tensor::arange(int64_t n, DType dtype) {
  return make_filled({n}, dtype, [](int64_t i) { return static_cast<double>(i); });
}

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  SL_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_vector: ", values.size(),
           " values do not fill shape ", shape_str(shape));
  return make_filled(shape, dtype, [&values](int64_t i) { return values[i]; });
}

Tensor Tensor::from_ints(const std::vector<int64_t>& values, const Shape& shape, DType dtype) {
  SL_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "from_ints: ", values.size(),
           " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, dtype);
  dispatch_numeric(dtype, "from_ints", [&]<typename T>() {
    T* p = t.data<T>();
    for (size_t i = 0; i < values.size(); ++i) p[i] = static_cast<T>(values[i]);
  });
  return t;
}

Tensor Tensor::randn(const Shape& shape, uint64_t seed, DType dtype, double mean, double stddev) {
  return make_filled(shape, dtype, [=](int64_t i) { return mean + stddev * standard_normal(seed, i); });
}

Tensor Tensor::rand(const Shape& shape, uint64_t seed, DType dtype, double low, double high) {
  return make_filled(shape, dtype, [=](int64_t i) { return low + (high - low) * uniform01(seed, i); });
}

Tensor Tensor::to(Device target) const {
  SL_CHECK(defined(), "to(", target.str(), "): undefined tensor");
  if (device() == target) return *this;
  if (!device().is_cpu() && !target.is_cpu()) return to(Device::cpu()).to(target);  // device to device via the host
  Tensor src = ops::contiguous(*this);
  Tensor dst = empty(shape(), dtype(), target);
  const Device side = target.is_cpu() ? device() : target;
  const trace::Scope span(target.is_cpu() ? "copy to host" : "copy to device", trace::Category::copy,
                          [&] { return trace::Args().add("bytes", dst.nbytes()).add("device", side.str()).json(); });
  detail::device_kernel(side, &DeviceKernels::copy_between_devices, "to")(dst, src);
  return dst;
}

std::vector<double> Tensor::to_double_vector() const {
  if (!device().is_cpu()) return to(Device::cpu()).to_double_vector();
  std::vector<double> out;
  out.reserve(numel());
  dispatch_numeric(dtype(), "to_double_vector", [&]<typename T>() {
    const T* base = static_cast<const T*>(impl()->storage->data());
    for_each_offset(shape(), strides(), offset(), [&](int64_t off) { out.push_back(to_double(base[off])); });
  });
  return out;
}

std::vector<int64_t> Tensor::to_int_vector() const {
  if (!device().is_cpu()) return to(Device::cpu()).to_int_vector();
  std::vector<int64_t> out;
  out.reserve(numel());
  // Integers are read as integers: a detour through double would corrupt i64 values above 2^53.
  dispatch_numeric(dtype(), "to_int_vector", [&]<typename T>() {
    const T* base = static_cast<const T*>(impl()->storage->data());
    for_each_offset(shape(), strides(), offset(), [&](int64_t off) {
      if constexpr (std::is_integral_v<T>) out.push_back(static_cast<int64_t>(base[off]));
      else out.push_back(static_cast<int64_t>(to_double(base[off])));
    });
  });
  return out;
}

double Tensor::item() const {
  SL_CHECK(numel() == 1, "item: tensor of shape ", shape_str(shape()), " has ", numel(), " elements, not 1");
  return to_double_vector()[0];
}

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::ostringstream os;
  os << "tensor(";
  {
    std::vector<double> v = to_double_vector();
    const bool is_f = is_floating(dtype());
    // Print like torch: nested brackets, at most 6 items per dim (first 3 ... last 3).
    std::function<void(int64_t, int64_t)> rec = [&](int64_t d, int64_t base) {
      if (d == dim()) {
        char buf[32];
        std::snprintf(buf, sizeof(buf), is_f ? "%.4f" : "%.0f", v[base]);
        os << buf;
        return;
      }
      int64_t n = shape()[d], inner = 1;
      for (int64_t k = d + 1; k < dim(); ++k) inner *= shape()[k];
      os << "[";
      for (int64_t i = 0; i < n; ++i) {
        if (n > 6 && i == 3) { os << "..., "; i = n - 3; }
        rec(d + 1, base + i * inner);
        if (i + 1 < n) os << (d + 1 == dim() ? ", " : ",\n" + std::string(8 + d, ' '));
      }
      os << "]";
    };
    rec(0, 0);
  }
  os << ", dtype=" << dtype_name(dtype());
  if (!device().is_cpu()) os << ", device=" << device().str();
  if (requires_grad()) os << ", requires_grad=True";
  os << ")";
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

AutogradMeta& Tensor::ensure_autograd_meta() const {
  if (!impl()->autograd) impl()->autograd = std::make_unique<AutogradMeta>();
  return *impl()->autograd;
}

bool Tensor::requires_grad() const { return impl()->autograd && impl()->autograd->requires_grad; }

const Tensor& Tensor::set_requires_grad(bool enabled) const {
  SL_CHECK(!enabled || is_floating(dtype()), "set_requires_grad: only floating tensors can require grad, not ",
           dtype_name(dtype()));
  ensure_autograd_meta().requires_grad = enabled;
  return *this;
}

Tensor Tensor::grad() const { return impl()->autograd ? impl()->autograd->grad : Tensor(); }
void Tensor::set_grad(const Tensor& grad) const { ensure_autograd_meta().grad = grad; }

DType parse_dtype(std::string_view name) {
  for (int i = 0; i < kNumDTypes; ++i)
    if (name == kDTypeTraits[i].name) return static_cast<DType>(i);
  if (name == "float32" || name == "float") return DType::f32;
  if (name == "float64" || name == "double") return DType::f64;
  if (name == "bfloat16") return DType::bf16;
  if (name == "float16" || name == "half") return DType::f16;
  if (name == "int32") return DType::i32;
  if (name == "int64") return DType::i64;
  if (name == "uint8") return DType::u8;
  if (name == "int8") return DType::i8;
  SL_FAIL("unknown dtype '", name, "'");
}

}  // namespace shardlab
