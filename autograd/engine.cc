// The backward engine (see engine.h). Iterative throughout: deep graphs cannot overflow the stack.
#include "autograd/engine.h"

#include <queue>
#include <unordered_map>
#include <unordered_set>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "core/ops.h"
#include "core/trace.h"

namespace shardlab {

namespace {

struct NodeState {
  int dependencies = 0;
  std::vector<Tensor> grads;  // one slot per node output, summed as gradients arrive
};

struct LaterFirst {
  bool operator()(const std::shared_ptr<Node>& a, const std::shared_ptr<Node>& b) const {
    return a->sequence_nr < b->sequence_nr;
  }
};

// Where a gradient arriving on an edge should also be captured (for grad()).
struct Capture {
  Node* node;
  uint32_t input_nr;
  size_t slot;
};

void add_into(Tensor& slot, const Tensor& g) { slot = slot.defined() ? ops::add(slot, g) : g; }

// Runs backward from `roots` with `root_grads`. With `captures` set (grad()), gradients reaching
// the captured edges are stored in `captured` and no leaf accumulates into .grad.
void run_engine(const std::vector<Edge>& roots, const std::vector<Tensor>& root_grads, bool retain_graph,
                const std::vector<Capture>* captures, std::vector<Tensor>* captured) {
  NoGradGuard no_grad;
  MemTagScope tag(MemTag::activation);
  std::unordered_map<Node*, NodeState> state;

  // 1. Count, for every reachable node, how many edges point at it.
  std::vector<Node*> stack;
  std::unordered_set<Node*> seen;
  for (const Edge& e : roots)
    if (e.valid() && seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next_edges) {
      if (!e.valid()) continue;
      state[e.fn.get()].dependencies++;
      if (seen.insert(e.fn.get()).second) stack.push_back(e.fn.get());
    }
  }

  auto deliver = [&](const Edge& e, const Tensor& g, const char* from) {
    const OutputMeta& m = e.fn->outputs.at(e.input_nr);
    SL_CHECK(g.shape() == m.shape, "backward of ", from, " produced a gradient of shape ", shape_str(g.shape()),
             " for an input of shape ", shape_str(m.shape));
    if (captures != nullptr)
      for (const Capture& c : *captures)
        if (c.node == e.fn.get() && c.input_nr == e.input_nr) add_into((*captured)[c.slot], g);
    NodeState& s = state[e.fn.get()];
    if (s.grads.empty()) s.grads.resize(e.fn->outputs.size());
    add_into(s.grads[e.input_nr], g);
  };

  std::priority_queue<std::shared_ptr<Node>, std::vector<std::shared_ptr<Node>>, LaterFirst> ready;
  for (size_t i = 0; i < roots.size(); ++i) {
    if (!roots[i].valid()) continue;
    deliver(roots[i], root_grads[i], "the root");
  }
  std::unordered_set<Node*> queued;
  for (const Edge& e : roots)
    if (e.valid() && state[e.fn.get()].dependencies == 0 && queued.insert(e.fn.get()).second) ready.push(e.fn);

  // 2. Run nodes whose gradients are complete; later-created nodes first.
  while (!ready.empty()) {
    std::shared_ptr<Node> node = ready.top();
    ready.pop();
    NodeState& s = state[node.get()];
    const bool is_leaf = dynamic_cast<AccumulateGrad*>(node.get()) != nullptr;
    if (s.grads.empty()) {
      // No gradient reached this node (its consumers returned none): skip its work, but still
      // release its inputs' dependency counts so that nodes below it can run.
      if (!is_leaf)
        for (const Edge& e : node->next_edges)
          if (e.valid() && --state[e.fn.get()].dependencies == 0) ready.push(e.fn);
      continue;
    }
    std::vector<Tensor> grads = std::move(s.grads);
    grads.resize(node->outputs.size());
    for (size_t i = 0; i < grads.size(); ++i)
      if (!grads[i].defined()) {
        const OutputMeta& m = node->outputs[i];
        grads[i] = Tensor::zeros(m.shape, m.dtype, m.device);
      }
    std::vector<Tensor> input_grads;
    if (!(is_leaf && captures != nullptr)) {
      const trace::Scope span(trace::Category::autograd, [&] { return node->name() + " backward"; });
      input_grads = node->apply(std::move(grads));
    }
    if (!retain_graph) node->release_saved();
    if (is_leaf) continue;
    SL_CHECK(input_grads.size() == node->next_edges.size(), "backward of ", node->name(), " returned ",
             input_grads.size(), " gradients for ", node->next_edges.size(), " inputs");
    const std::string name = node->name();
    for (size_t i = 0; i < node->next_edges.size(); ++i) {
      const Edge& e = node->next_edges[i];
      if (!e.valid()) continue;
      if (input_grads[i].defined()) deliver(e, input_grads[i], name.c_str());
      if (--state[e.fn.get()].dependencies == 0) ready.push(e.fn);
    }
  }
}

Tensor default_root_grad(const Tensor& root, const Tensor& grad) {
  if (grad.defined()) {
    SL_CHECK(grad.shape() == root.shape(), "backward: gradient of shape ", shape_str(grad.shape()),
             " for a root of shape ", shape_str(root.shape()));
    return grad;
  }
  SL_CHECK(root.numel() == 1, "backward: a root of shape ", shape_str(root.shape()),
           " is not a scalar; pass its gradient explicitly");
  return Tensor::ones(root.shape(), root.dtype(), root.device());
}

}  // namespace

void backward(const Tensor& root, const Tensor& grad, BackwardOptions options) {
  backward(std::vector<Tensor>{root}, std::vector<Tensor>{grad}, options);
}

void backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, BackwardOptions options) {
  SL_CHECK(grads.empty() || grads.size() == roots.size(), "backward: ", roots.size(), " roots but ", grads.size(),
           " gradients");
  std::vector<Edge> edges;
  std::vector<Tensor> root_grads;
  for (size_t i = 0; i < roots.size(); ++i) {
    SL_CHECK(roots[i].requires_grad(), "backward: root ", i, " (shape ", shape_str(roots[i].shape()),
             ") does not require grad: no input of the computation requires grad, or it ran under NoGradGuard");
    edges.push_back(gradient_edge(roots[i]));
    root_grads.push_back(default_root_grad(roots[i], grads.empty() ? Tensor() : grads[i]));
  }
  run_engine(edges, root_grads, options.retain_graph, nullptr, nullptr);
}

std::vector<Tensor> grad(const std::vector<Tensor>& outputs, const std::vector<Tensor>& grad_outputs,
                         const std::vector<Tensor>& inputs, BackwardOptions options) {
  SL_CHECK(grad_outputs.empty() || grad_outputs.size() == outputs.size(), "grad: ", outputs.size(),
           " outputs but ", grad_outputs.size(), " gradients");
  std::vector<Edge> edges;
  std::vector<Tensor> root_grads;
  for (size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i].requires_grad()) continue;
    edges.push_back(gradient_edge(outputs[i]));
    root_grads.push_back(default_root_grad(outputs[i], grad_outputs.empty() ? Tensor() : grad_outputs[i]));
  }
  std::vector<Capture> captures;
  for (size_t i = 0; i < inputs.size(); ++i) {
    SL_CHECK(inputs[i].requires_grad(), "grad: input ", i, " does not require grad");
    Edge e = gradient_edge(inputs[i]);
    captures.push_back({e.fn.get(), e.input_nr, i});
  }
  std::vector<Tensor> captured(inputs.size());
  run_engine(edges, root_grads, options.retain_graph, &captures, &captured);
  return captured;
}

Tensor detach(const Tensor& t) { return ops::alias(t); }

void register_grad_ready_hook(const Tensor& leaf, std::function<void(const Tensor&)> hook) {
  SL_CHECK(leaf.requires_grad() && leaf.autograd_meta()->grad_fn == nullptr,
           "register_grad_ready_hook: the tensor (shape ", shape_str(leaf.shape()),
           ") is not a leaf that requires grad");
  leaf.autograd_meta()->grad_ready_hooks.push_back(std::move(hook));
}

}  // namespace shardlab
