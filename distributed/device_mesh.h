// DeviceMesh: the world's ranks laid out as a named N-D grid (1-D {"shard"}, or 2-D {"replicate",
// "shard"} for hybrid sharding), with this rank's sub-group along each dimension. Row-major: the
// last dimension varies fastest, so with {"replicate", "shard"} = {R, S} world rank w sits at
// (w / S, w % S) and its shard group is the S consecutive ranks of its row.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "distributed/process_group.h"

namespace shardlab::dist {

class DeviceMesh {
 public:
  // Collective over `world` (every rank builds the same mesh). The sizes must multiply to the world
  // size and the names must be distinct and non-empty: errors name all of them.
  DeviceMesh(std::shared_ptr<ProcessGroup> world, std::vector<std::string> dim_names, std::vector<int> dim_sizes);

  int ndim() const { return static_cast<int>(dim_names_.size()); }
  const std::vector<std::string>& dim_names() const { return dim_names_; }
  const std::vector<int>& dim_sizes() const { return dim_sizes_; }
  int size(const std::string& dim) const { return dim_sizes_[index_of(dim)]; }
  // This rank's index along `dim` (its rank within group(dim)).
  int coordinate(const std::string& dim) const { return coordinates_[index_of(dim)]; }
  // The ranks that share all of this rank's coordinates but `dim`: its sub-group along `dim`,
  // named e.g. "shard[2,3]". A dimension spanning the whole world is the world group itself.
  const std::shared_ptr<ProcessGroup>& group(const std::string& dim) const { return groups_[index_of(dim)]; }
  const std::shared_ptr<ProcessGroup>& world() const { return world_; }
  // "(replicate=2, shard=2)"
  std::string str() const;

 private:
  int index_of(const std::string& dim) const;

  std::shared_ptr<ProcessGroup> world_;
  std::vector<std::string> dim_names_;
  std::vector<int> dim_sizes_;
  std::vector<int> coordinates_;
  std::vector<std::shared_ptr<ProcessGroup>> groups_;
};

}  // namespace shardlab::dist
