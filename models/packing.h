// Batches of fixed-shape tensors from tokenized samples: right padding (to the longest sample or
// to sequence_len) or sample packing, where whole samples share a row with positions restarting
// per document and segment ids that keep attention inside each document.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "models/dataset.h"

namespace shardlab::models {

// One micro batch. B rows of T tokens; labels use kIgnoreLabel where nothing is trained.
struct Batch {
  Tensor input_ids;    // (B, T) i64; padding holds the pad id (the encoder's pad_id, else 0)
  Tensor labels;       // (B, T) i64; the model shifts: logits at t predict labels[t + 1]
  Tensor positions;    // (B, T) i64; RoPE positions, restarting at 0 for each packed document
  Tensor segment_ids;  // (B, T) i64 when packing (document index in the row), else undefined
  // Targets the loss sees after the shift: labels[:, 1:] != -100. Sum this across ranks and
  // micro batches to normalise the loss of a global batch.
  int64_t num_target_tokens = 0;
  int64_t rows() const { return input_ids.defined() ? input_ids.size(0) : 0; }
};

// Packs samples greedily in the given order (next fit): a sample goes into the current row if it
// fits in sequence_len tokens, else it starts a new row. Samples are never split or reordered,
// so packing a shuffled order keeps the shuffle. Returns rows of sample indices. A sample longer
// than sequence_len is an error (tokenize_parts truncates to sequence_len).
std::vector<std::vector<int64_t>> pack_samples(const std::vector<Sample>& samples, const std::vector<int64_t>& order,
                                               int64_t sequence_len);

// One sample per row, right-padded: to sequence_len when pad_to_sequence_len, else to the longest
// sample in the batch (dynamic padding). Positions are 0..T-1; segment_ids stay undefined
// (right padding needs no mask: real tokens never see the padding after them, and padded
// labels are ignored). An empty `rows` gives (0, T) tensors.
Batch collate_padded(const std::vector<const Sample*>& rows, int64_t sequence_len, bool pad_to_sequence_len,
                     int64_t pad_id);

// NOTE [packed rows]: each row holds whole documents back to back, then padding up to
// sequence_len. Within a row, document d has segment id d and positions 0..len-1; padding is one
// more segment with its own positions 0.., so nothing attends across documents or into padding.
// Because logits at t predict labels[t + 1], the first token of every document gets label -100:
// otherwise the last token of the previous document would be trained to predict it.
// Padding labels are -100 and padding ids are pad_id.
Batch collate_packed(const std::vector<std::vector<const Sample*>>& rows, int64_t sequence_len, int64_t pad_id);

}  // namespace shardlab::models
