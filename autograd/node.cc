// Nodes, saved tensors, gradient accumulation into leaves, and op recording.
#include "autograd/node.h"

#include <limits>

#include "autograd/record.h"
#include "core/ops.h"

namespace shardlab {

namespace {
std::atomic<uint64_t> g_next_sequence_nr{0};
}

Node::Node() : sequence_nr(g_next_sequence_nr.fetch_add(1, std::memory_order_relaxed)) {}

SavedTensor::SavedTensor(const Tensor& t) {
  if (!t.defined()) return;
  data_ = ops::alias(t);
  version_ = t.version();
}

Tensor SavedTensor::unpack(const char* op) const {
  SL_CHECK(data_.defined(), op, ": a saved tensor was used after it was released");
  SL_CHECK(data_.version() == version_, op, ": a tensor saved for its backward (shape ", shape_str(data_.shape()),
           ") was modified in place after it was saved: version ", version_, " at save, ", data_.version(),
           " now. Clone it before modifying it, or modify a copy.");
  return data_;
}

std::vector<Tensor> FunctionNode::apply(std::vector<Tensor>&& grads) {
  SL_CHECK(fn_ != nullptr, "backward through ", name_,
           " a second time: its saved tensors were freed after the first backward. "
           "Pass retain_graph = true to the first backward if you need to run it again.");
  return fn_(grads);
}

std::vector<Tensor> AccumulateGrad::apply(std::vector<Tensor>&& grads) {
  Tensor leaf(leaf_);
  Tensor& incoming = grads[0];
  AutogradMeta& meta = leaf.ensure_autograd_meta();
  SL_CHECK(incoming.shape() == leaf.shape() && incoming.dtype() == leaf.dtype(), "AccumulateGrad: a ",
           dtype_name(incoming.dtype()), " gradient of shape ", shape_str(incoming.shape()), " for a ",
           dtype_name(leaf.dtype()), " leaf of shape ", shape_str(leaf.shape()));
  {
    MemTagScope tag(MemTag::gradient);
    if (!meta.grad.defined()) {
      // Adopt the incoming buffer when nothing else refers to it; otherwise copy it, so that
      // .grad never aliases another tensor.
      const bool sole_owner = incoming.impl_ptr().use_count() == 1 && incoming.storage().use_count() == 1 &&
                              incoming.is_contiguous() && incoming.offset() == 0 &&
                              incoming.autograd_meta() == nullptr;
      if (sole_owner) {
        incoming.retag(MemTag::gradient);
        meta.grad = incoming;
      } else {
        meta.grad = ops::clone(incoming);
      }
    } else {
      ops::add_(meta.grad, incoming);
    }
  }
  for (auto& hook : meta.grad_ready_hooks) hook(leaf);
  return {};
}

Edge gradient_edge(const Tensor& t) {
  AutogradMeta* meta = t.autograd_meta();
  if (meta == nullptr) return {};
  if (meta->grad_fn) return {meta->grad_fn, meta->output_nr};
  if (!meta->requires_grad) return {};
  std::shared_ptr<Node> acc = meta->grad_accumulator.lock();
  if (!acc) {
    acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
    // Leaves run as soon as their gradient is complete, before any other ready node, so that
    // grad-ready hooks fire as early as possible (DDP overlaps communication with them).
    acc->sequence_nr = std::numeric_limits<uint64_t>::max();
    acc->outputs.push_back({t.shape(), t.dtype(), t.device()});
    meta->grad_accumulator = acc;
  }
  return {acc, 0};
}

bool needs_grad(std::initializer_list<Tensor> inputs) {
  if (!GradMode::enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

bool needs_grad(const std::vector<Tensor>& inputs) {
  if (!GradMode::enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void record(const char* op, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs,
            BackwardFn backward) {
  auto node = std::make_shared<FunctionNode>(op, std::move(backward));
  node->next_edges.reserve(inputs.size());
  for (const Tensor& in : inputs) node->next_edges.push_back(in.defined() ? gradient_edge(in) : Edge{});
  for (size_t i = 0; i < outputs.size(); ++i) {
    const Tensor& out = outputs[i];
    for (const Tensor& in : inputs)
      SL_CHECK(!out.is_same(in), op, ": internal error: an output is the same tensor object as an input");
    AutogradMeta& meta = out.ensure_autograd_meta();
    SL_CHECK(meta.grad_fn == nullptr && !meta.requires_grad, op,
             ": internal error: an output already belongs to the autograd graph");
    meta.requires_grad = is_floating(out.dtype());
    meta.grad_fn = node;
    meta.output_nr = static_cast<uint32_t>(i);
    node->outputs.push_back({out.shape(), out.dtype(), out.device()});
  }
}

}  // namespace shardlab
