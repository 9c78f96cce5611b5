// DeviceMesh: checking the layout against the world and creating one sub-group per dimension.
#include "distributed/device_mesh.h"

#include <algorithm>

#include "core/error.h"

namespace shardlab::dist {

std::string DeviceMesh::str() const {
  std::string out = "(";
  for (size_t d = 0; d < dim_names_.size(); ++d)
    out += (d ? ", " : "") + dim_names_[d] + "=" + std::to_string(dim_sizes_[d]);
  return out + ")";
}

DeviceMesh::DeviceMesh(std::shared_ptr<ProcessGroup> world, std::vector<std::string> dim_names,
                       std::vector<int> dim_sizes)
    : world_(std::move(world)), dim_names_(std::move(dim_names)), dim_sizes_(std::move(dim_sizes)) {
  SL_CHECK(world_ != nullptr, "DeviceMesh: no world group");
  SL_CHECK(!dim_names_.empty() && dim_names_.size() == dim_sizes_.size(), "DeviceMesh: ", dim_names_.size(),
           " dimension names for ", dim_sizes_.size(), " sizes (need one size per name, at least one)");
  int64_t product = 1;
  for (size_t d = 0; d < dim_names_.size(); ++d) {
    SL_CHECK(!dim_names_[d].empty(), "DeviceMesh ", str(), ": dimension ", d, " has no name");
    SL_CHECK(std::count(dim_names_.begin(), dim_names_.end(), dim_names_[d]) == 1, "DeviceMesh ", str(),
             ": dimension name '", dim_names_[d], "' is used twice");
    SL_CHECK(dim_sizes_[d] >= 1, "DeviceMesh ", str(), ": dimension '", dim_names_[d], "' has size ", dim_sizes_[d]);
    product *= dim_sizes_[d];
  }
  SL_CHECK(product == world_->size(), "DeviceMesh ", str(), ": the sizes multiply to ", product, " but the world has ",
           world_->size(), " ranks");

  // Row-major coordinates of this rank: the last dimension varies fastest.
  const int me = world_->rank();
  std::vector<int> strides(ndim(), 1);
  for (int d = ndim() - 2; d >= 0; --d) strides[d] = strides[d + 1] * dim_sizes_[d + 1];
  for (int d = 0; d < ndim(); ++d) coordinates_.push_back(me / strides[d] % dim_sizes_[d]);

  // For each dimension every rank creates every line along it (new_group is collective over the
  // world; non-members get nullptr), in the same order on every rank.
  groups_.resize(ndim());
  for (int d = 0; d < ndim(); ++d) {
    if (dim_sizes_[d] == world_->size()) {
      groups_[d] = world_;
      continue;
    }
    for (int first = 0; first < world_->size(); ++first) {
      if (first / strides[d] % dim_sizes_[d] != 0) continue;  // each line once, from its first rank
      std::vector<int> line;
      std::string name = dim_names_[d] + "[";
      for (int k = 0; k < dim_sizes_[d]; ++k) {
        line.push_back(first + k * strides[d]);
        name += (k ? "," : "") + std::to_string(world_->world_ranks()[line.back()]);
      }
      std::shared_ptr<ProcessGroup> group = world_->new_group(line, name + "]");
      if (group) groups_[d] = std::move(group);
    }
    SL_CHECK(groups_[d] != nullptr, "DeviceMesh ", str(), ": rank ", me, " got no group along '", dim_names_[d], "'");
  }
}

int DeviceMesh::index_of(const std::string& dim) const {
  for (int d = 0; d < ndim(); ++d)
    if (dim_names_[d] == dim) return d;
  std::string names;
  for (const std::string& n : dim_names_) names += (names.empty() ? "" : ", ") + n;
  SL_FAIL("DeviceMesh ", str(), ": no dimension '", dim, "' (dimensions: ", names, ")");
}

}  // namespace shardlab::dist
