// DataLoader: epochs of deterministically shuffled (and optionally packed) samples, cut into
// global batches that ranks share out, with a position that can be saved and restored.
#pragma once

#include <cstdint>
#include <vector>

#include "core/json.h"
#include "models/dataset.h"
#include "models/packing.h"

namespace shardlab::models {

struct LoaderOptions {
  int64_t micro_batch_size = 1;  // rows per rank per micro batch
  int64_t sequence_len = 2048;
  bool sample_packing = false;
  bool pad_to_sequence_len = false;  // ignored when packing (packed rows are always sequence_len)
  bool shuffle = true;               // false: dataset order every epoch (e.g. evaluation)
  // true: an incomplete last global batch is dropped, so every batch is full on every rank.
  // false: it is kept; ranks past the end of the data get short or empty (0-row) batches.
  bool drop_last = true;
  uint64_t seed = 42;
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t pad_id = 0;  // the tokenizer's pad id, else 0 (padding is never a target)
};

// Where a loader stands: the next batch it returns is batch `index` of epoch `epoch`. After the
// last batch of an epoch it reads {epoch + 1, 0}, so `epoch` counts finished epochs.
struct LoaderPosition {
  int64_t epoch = 0;
  int64_t index = 0;
  json::Value to_json() const;  // {"epoch": e, "index": i}
  static LoaderPosition from_json(const json::Ref& ref);
  bool operator==(const LoaderPosition&) const = default;
};

// NOTE [global batch layout]: an epoch is a list of units, samples or (with packing) packed rows,
// in the order of a Philox permutation keyed by (seed, epoch), packed after shuffling. Global
// batch k is units [k*W*B, (k+1)*W*B) for world size W and micro batch size B; rank r takes
// units [k*W*B + r*B, k*W*B + (r+1)*B). So the W micro batches of global batch k, in rank order,
// are exactly what one process with micro_batch_size W*B (or B with W accumulation steps) sees
// as its batch k: ranks see disjoint data and the loss curve does not depend on W.
// Everything is a pure function of (samples, options, epoch, index): resuming at a saved
// position yields the batches an uninterrupted run would have produced.
// Not thread-safe: one epoch's shuffled/packed unit list is cached inside.
class DataLoader {
 public:
  DataLoader(std::vector<Sample> samples, LoaderOptions options);

  const LoaderOptions& options() const { return options_; }
  int64_t num_samples() const { return static_cast<int64_t>(samples_.size()); }
  const std::vector<Sample>& samples() const { return samples_; }

  // Units (samples, or packed rows) in an epoch: may vary by epoch with packing.
  int64_t units_in_epoch(int64_t epoch) const;
  // Global batches (= micro batches on every rank) in an epoch.
  int64_t batches_in_epoch(int64_t epoch) const;
  // Batches in epochs [0, num_epochs), for LR schedules and max_steps.
  int64_t batches_in_epochs(int64_t num_epochs) const;

  // This rank's micro batch `index` of `epoch`, without moving the position.
  Batch batch(int64_t epoch, int64_t index) const;
  // The sample indices of that batch, one list per row (one sample per row unless packing).
  std::vector<std::vector<int64_t>> batch_samples(int64_t epoch, int64_t index) const;

  // The batch at position(), then advances (into the next epoch after the last batch).
  Batch next();
  LoaderPosition position() const { return position_; }
  // Restores a saved position; index may equal batches_in_epoch(epoch) (the end of the epoch).
  void set_position(LoaderPosition position);

 private:
  const std::vector<std::vector<int64_t>>& units(int64_t epoch) const;  // cached for one epoch

  std::vector<Sample> samples_;
  LoaderOptions options_;
  LoaderPosition position_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<std::vector<int64_t>> cached_units_;
};

}  // namespace shardlab::models
