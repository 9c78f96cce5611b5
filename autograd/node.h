// Graph nodes. A Node is the backward of one op application: it maps the gradients of the op's
// outputs to gradients of its inputs, which flow along `next_edges` to the nodes that made those
// inputs (or to a leaf's gradient accumulator). Nodes save only what backward needs.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace shardlab {

class Node;

struct Edge {
  std::shared_ptr<Node> fn;  // null: the input needs no gradient
  uint32_t input_nr = 0;     // which output of `fn` the gradient belongs to
  bool valid() const { return fn != nullptr; }
};

// Shape, dtype and device of one output, so that a missing output gradient can be zero-filled.
struct OutputMeta {
  Shape shape;
  DType dtype;
  Device device;
};

// A tensor saved for backward. It keeps the data (not the autograd state, which would make a
// cycle through the op's own outputs) and the version at save time: unpacking after an in-place
// edit is an error naming the op.
class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  Tensor unpack(const char* op) const;
  bool defined() const { return data_.defined(); }

 private:
  Tensor data_;
  uint64_t version_ = 0;
};

class Node : public std::enable_shared_from_this<Node> {
 public:
  Node();
  virtual ~Node() = default;
  // grads has one (defined) tensor per output; returns one per next edge (undefined = none).
  virtual std::vector<Tensor> apply(std::vector<Tensor>&& grads) = 0;
  virtual std::string name() const = 0;
  // Frees saved state after a backward without retain_graph; a second backward then errors.
  virtual void release_saved() {}

  std::vector<Edge> next_edges;
  std::vector<OutputMeta> outputs;
  // Creation order; the engine runs later nodes first among those that are ready.
  uint64_t sequence_nr;
};

// The backward of an ordinary op: a function from output grads to input grads. Rules are written
// as lambdas capturing SavedTensors (see autograd/record.h).
using BackwardFn = std::function<std::vector<Tensor>(const std::vector<Tensor>& grads)>;

class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : name_(std::move(name)), fn_(std::move(fn)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  std::string name() const override { return name_; }
  void release_saved() override { fn_ = nullptr; }

 private:
  std::string name_;
  BackwardFn fn_;
};

// Writes incoming gradients into a leaf's .grad (assigning the first, adding later ones), then
// runs the leaf's grad-ready hooks.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  std::vector<Tensor> apply(std::vector<Tensor>&& grads) override;
  std::string name() const override { return "AccumulateGrad"; }

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// The edge along which a gradient for `t` should flow: its grad_fn, or its leaf accumulator if
// it requires grad, or an invalid edge.
Edge gradient_edge(const Tensor& t);

}  // namespace shardlab
