// Padding and sample packing into (B, T) batches (see packing.h).
#include "models/packing.h"

#include <algorithm>

#include "core/error.h"

namespace shardlab::models {

std::vector<std::vector<int64_t>> pack_samples(const std::vector<Sample>& samples, const std::vector<int64_t>& order,
                                               int64_t sequence_len) {
  SL_CHECK(sequence_len > 0, "pack_samples: sequence_len must be positive, got ", sequence_len);
  std::vector<std::vector<int64_t>> rows;
  int64_t used = sequence_len;  // forces a new row for the first sample
  for (int64_t i : order) {
    SL_CHECK(i >= 0 && i < static_cast<int64_t>(samples.size()), "pack_samples: sample index ", i,
             " out of range for ", samples.size(), " samples");
    const int64_t len = samples[i].size();
    SL_CHECK(len > 0, "pack_samples: sample ", i, " is empty");
    SL_CHECK(len <= sequence_len, "pack_samples: sample ", i, " has ", len, " tokens, more than sequence_len ",
             sequence_len);
    if (used + len > sequence_len) {
      rows.emplace_back();
      used = 0;
    }
    rows.back().push_back(i);
    used += len;
  }
  return rows;
}

namespace {

struct Buffers {
  std::vector<int64_t> ids, labels, positions, segments;
  Buffers(int64_t B, int64_t T, int64_t pad_id, bool with_segments)
      : ids(B * T, pad_id), labels(B * T, kIgnoreLabel), positions(B * T, 0), segments(with_segments ? B * T : 0, 0) {}
};

int64_t count_targets(const std::vector<int64_t>& labels, int64_t B, int64_t T) {
  int64_t n = 0;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 1; t < T; ++t) n += labels[b * T + t] != kIgnoreLabel;
  return n;
}

}  // namespace

Batch collate_padded(const std::vector<const Sample*>& rows, int64_t sequence_len, bool pad_to_sequence_len,
                     int64_t pad_id) {
  SL_CHECK(sequence_len > 0, "collate_padded: sequence_len must be positive, got ", sequence_len);
  const int64_t B = static_cast<int64_t>(rows.size());
  int64_t longest = 0;
  for (const Sample* s : rows) {
    SL_CHECK(s->size() <= sequence_len, "collate_padded: a sample has ", s->size(), " tokens, more than sequence_len ",
             sequence_len);
    SL_CHECK(s->labels.size() == s->input_ids.size(), "collate_padded: a sample has ", s->input_ids.size(),
             " input ids but ", s->labels.size(), " labels");
    longest = std::max(longest, s->size());
  }
  const int64_t T = pad_to_sequence_len ? sequence_len : longest;
  Buffers buf(B, T, pad_id, false);
  for (int64_t b = 0; b < B; ++b) {
    const Sample& s = *rows[b];
    std::copy(s.input_ids.begin(), s.input_ids.end(), buf.ids.begin() + b * T);
    std::copy(s.labels.begin(), s.labels.end(), buf.labels.begin() + b * T);
    for (int64_t t = 0; t < T; ++t) buf.positions[b * T + t] = t;
  }
  Batch batch;
  batch.input_ids = Tensor::from_ints(buf.ids, {B, T});
  batch.labels = Tensor::from_ints(buf.labels, {B, T});
  batch.positions = Tensor::from_ints(buf.positions, {B, T});
  batch.num_target_tokens = count_targets(buf.labels, B, T);
  return batch;
}

Batch collate_packed(const std::vector<std::vector<const Sample*>>& rows, int64_t sequence_len, int64_t pad_id) {
  SL_CHECK(sequence_len > 0, "collate_packed: sequence_len must be positive, got ", sequence_len);
  const int64_t B = static_cast<int64_t>(rows.size());
  const int64_t T = sequence_len;
  Buffers buf(B, T, pad_id, true);
  for (int64_t b = 0; b < B; ++b) {
    int64_t t = 0, doc = 0;
    for (const Sample* s : rows[b]) {
      const int64_t len = s->size();
      SL_CHECK(s->labels.size() == s->input_ids.size(), "collate_packed: a sample has ", s->input_ids.size(),
               " input ids but ", s->labels.size(), " labels");
      SL_CHECK(t + len <= T, "collate_packed: row ", b, " holds more than sequence_len ", T, " tokens");
      for (int64_t k = 0; k < len; ++k) {
        const int64_t at = b * T + t + k;
        buf.ids[at] = s->input_ids[k];
        // k == 0: the previous document's last token must not learn to predict this one.
        buf.labels[at] = k == 0 ? kIgnoreLabel : s->labels[k];
        buf.positions[at] = k;
        buf.segments[at] = doc;
      }
      t += len;
      ++doc;
    }
    for (int64_t k = 0; t + k < T; ++k) {  // padding: a segment of its own
      buf.positions[b * T + t + k] = k;
      buf.segments[b * T + t + k] = doc;
    }
  }
  Batch batch;
  batch.input_ids = Tensor::from_ints(buf.ids, {B, T});
  batch.labels = Tensor::from_ints(buf.labels, {B, T});
  batch.positions = Tensor::from_ints(buf.positions, {B, T});
  batch.segment_ids = Tensor::from_ints(buf.segments, {B, T});
  batch.num_target_tokens = count_targets(buf.labels, B, T);
  return batch;
}

}  // namespace shardlab::models
