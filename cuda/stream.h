// Streams per device: the compute stream every op kernel launches on (ops on one device are
// ordered by it, as PyTorch's current stream), and separate streams for host<->device copies and
// for collectives, ordered against it with events so the host never blocks.
#pragma once

#include <cuda_runtime_api.h>

namespace shardlab::cuda {

// The stream op kernels on `device` launch on (created on first use, non-blocking).
cudaStream_t compute_stream(int device);
// The stream for host<->device copies (offload, prefetch) on `device`.
cudaStream_t copy_stream(int device);
// The stream NCCL collectives on `device` run on.
cudaStream_t comm_stream(int device);

// A CUDA event owned by this object: record it on one stream, make another stream (or the host)
// wait for it. Movable, not copyable. Timing is off unless asked for (cheaper to record).
class Event {
 public:
  explicit Event(bool timing = false);
  ~Event();
  Event(Event&& other) noexcept;
  Event& operator=(Event&& other) noexcept;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  // Marks the point in `stream` after all work queued there so far.
  void record(cudaStream_t stream);
  // Work queued on `stream` from now on starts only after the recorded point (no host wait).
  void wait(cudaStream_t stream) const;
  // Blocks the host until the recorded point is reached.
  void synchronize() const;
  // Whether the recorded point has been reached (true for an event never recorded).
  bool query() const;
  // Milliseconds from `start` to this event (both recorded with timing on, both completed).
  float elapsed_ms_since(const Event& start) const;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
  int device_ = 0;
};

// `waiter` waits (on the device) for all work queued so far on `producer`.
void stream_wait_stream(cudaStream_t waiter, cudaStream_t producer);

}  // namespace shardlab::cuda
