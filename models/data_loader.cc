// DataLoader: shuffling, packing and rank slicing of global batches (see data_loader.h).
#include "models/data_loader.h"

#include <algorithm>

#include "core/error.h"

namespace shardlab::models {

json::Value LoaderPosition::to_json() const {
  json::Value v = json::Value::object();
  v.set("epoch", epoch);
  v.set("index", index);
  return v;
}

LoaderPosition LoaderPosition::from_json(const json::Ref& ref) {
  for (const std::string& k : ref.keys())
    if (k != "epoch" && k != "index") ref[k].fail("is not a data loader position key (epoch, index)");
  LoaderPosition p{ref["epoch"].as_int(), ref["index"].as_int()};
  if (p.epoch < 0) ref["epoch"].fail("must be >= 0");
  if (p.index < 0) ref["index"].fail("must be >= 0");
  return p;
}

DataLoader::DataLoader(std::vector<Sample> samples, LoaderOptions options)
    : samples_(std::move(samples)), options_(options) {
  const LoaderOptions& o = options_;
  SL_CHECK(!samples_.empty(), "DataLoader: no samples");
  SL_CHECK(o.micro_batch_size > 0, "DataLoader: micro_batch_size must be positive, got ", o.micro_batch_size);
  SL_CHECK(o.sequence_len > 0, "DataLoader: sequence_len must be positive, got ", o.sequence_len);
  SL_CHECK(o.world_size > 0, "DataLoader: world_size must be positive, got ", o.world_size);
  SL_CHECK(o.rank >= 0 && o.rank < o.world_size, "DataLoader: rank ", o.rank, " is outside world size ",
           o.world_size);
  for (size_t i = 0; i < samples_.size(); ++i) {
    const Sample& s = samples_[i];
    SL_CHECK(s.size() > 0 && s.labels.size() == s.input_ids.size(), "DataLoader: sample ", i, " has ",
             s.input_ids.size(), " input ids and ", s.labels.size(), " labels");
    SL_CHECK(s.size() <= o.sequence_len, "DataLoader: sample ", i, " has ", s.size(),
             " tokens, more than sequence_len ", o.sequence_len, " (tokenize with the same sequence_len)");
  }
  SL_CHECK(batches_in_epoch(0) > 0, "DataLoader: ", units_in_epoch(0), o.sample_packing ? " packed rows" : " samples",
           " do not fill one global batch of ", o.world_size, " ranks x ", o.micro_batch_size,
           " rows (lower micro_batch_size or set drop_last = false)");
}

const std::vector<std::vector<int64_t>>& DataLoader::units(int64_t epoch) const {
  SL_CHECK(epoch >= 0, "DataLoader: negative epoch ", epoch);
  if (epoch == cached_epoch_) return cached_units_;
  const int64_t n = num_samples();
  std::vector<int64_t> order;
  if (options_.shuffle) {
    order = seeded_permutation(n, options_.seed, static_cast<uint64_t>(epoch));
  } else {
    order.resize(n);
    for (int64_t i = 0; i < n; ++i) order[i] = i;
  }
  cached_units_.clear();
  if (options_.sample_packing) {
    cached_units_ = pack_samples(samples_, order, options_.sequence_len);
  } else {
    cached_units_.reserve(n);
    for (int64_t i : order) cached_units_.push_back({i});
  }
  cached_epoch_ = epoch;
  return cached_units_;
}

int64_t DataLoader::units_in_epoch(int64_t epoch) const {
  // Without packing every epoch has all samples; no need to build the order.
  if (!options_.sample_packing) return num_samples();
  return static_cast<int64_t>(units(epoch).size());
}

int64_t DataLoader::batches_in_epoch(int64_t epoch) const {
  const int64_t global = options_.world_size * options_.micro_batch_size;
  const int64_t u = units_in_epoch(epoch);
  return options_.drop_last ? u / global : (u + global - 1) / global;
}

int64_t DataLoader::batches_in_epochs(int64_t num_epochs) const {
  int64_t total = 0;
  for (int64_t e = 0; e < num_epochs; ++e) total += batches_in_epoch(e);
  return total;
}

std::vector<std::vector<int64_t>> DataLoader::batch_samples(int64_t epoch, int64_t index) const {
  const int64_t count = batches_in_epoch(epoch);
  SL_CHECK(index >= 0 && index < count, "DataLoader: batch ", index, " is outside epoch ", epoch, ", which has ", count,
           " batches");
  const std::vector<std::vector<int64_t>>& u = units(epoch);
  const int64_t B = options_.micro_batch_size;
  const int64_t begin = std::min<int64_t>((index * options_.world_size + options_.rank) * B, u.size());
  const int64_t end = std::min<int64_t>(begin + B, u.size());
  return {u.begin() + begin, u.begin() + end};
}

Batch DataLoader::batch(int64_t epoch, int64_t index) const {
  std::vector<std::vector<int64_t>> rows = batch_samples(epoch, index);
  if (options_.sample_packing) {
    std::vector<std::vector<const Sample*>> packed(rows.size());
    for (size_t r = 0; r < rows.size(); ++r)
      for (int64_t i : rows[r]) packed[r].push_back(&samples_[i]);
    return collate_packed(packed, options_.sequence_len, options_.pad_id);
  }
  std::vector<const Sample*> flat;
  flat.reserve(rows.size());
  for (const auto& r : rows) flat.push_back(&samples_[r.front()]);
  return collate_padded(flat, options_.sequence_len, options_.pad_to_sequence_len, options_.pad_id);
}

Batch DataLoader::next() {
  Batch b = batch(position_.epoch, position_.index);
  if (++position_.index == batches_in_epoch(position_.epoch)) position_ = {position_.epoch + 1, 0};
  return b;
}

void DataLoader::set_position(LoaderPosition position) {
  SL_CHECK(position.epoch >= 0 && position.index >= 0, "DataLoader: invalid position (epoch ", position.epoch,
           ", index ", position.index, ")");
  const int64_t count = batches_in_epoch(position.epoch);
  SL_CHECK(position.index <= count, "DataLoader: position index ", position.index, " is past the ", count,
           " batches of epoch ", position.epoch, " (was it saved with other data or batch settings?)");
  position_ = position.index == count ? LoaderPosition{position.epoch + 1, 0} : position;
}

}  // namespace shardlab::models
