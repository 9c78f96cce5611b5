// Per-device streams, created once on first use, and the Event wrapper.
#include "cuda/stream.h"

#include <mutex>
#include <utility>

#include "core/error.h"
#include "cuda/device.h"

namespace shardlab::cuda {

namespace {
constexpr int kMaxDevices = 16;
enum StreamKind { kCompute, kCopy, kComm, kNumKinds };

cudaStream_t stream_of(int device, StreamKind kind) {
  static cudaStream_t streams[kNumKinds][kMaxDevices] = {};
  static std::once_flag once[kNumKinds][kMaxDevices];
  SL_CHECK(device >= 0 && device < kMaxDevices, "cuda stream: device index ", device, " out of range");
  std::call_once(once[kind][device], [device, kind] {
    int previous = 0;
    SL_CUDA_CHECK(cudaGetDevice(&previous));
    SL_CUDA_CHECK(cudaSetDevice(device));
    // Non-blocking: none of them synchronizes with the legacy default stream.
    SL_CUDA_CHECK(cudaStreamCreateWithFlags(&streams[kind][device], cudaStreamNonBlocking));
    SL_CUDA_CHECK(cudaSetDevice(previous));
  });
  return streams[kind][device];
}
}  // namespace

cudaStream_t compute_stream(int device) { return stream_of(device, kCompute); }
cudaStream_t copy_stream(int device) { return stream_of(device, kCopy); }
cudaStream_t comm_stream(int device) { return stream_of(device, kComm); }

Event::Event(bool timing) {
  SL_CUDA_CHECK(cudaGetDevice(&device_));
  SL_CUDA_CHECK(cudaEventCreateWithFlags(&event_, timing ? cudaEventDefault : cudaEventDisableTiming));
}

Event::~Event() {
  if (event_ != nullptr) (void)cudaEventDestroy(event_);  // never throw from a destructor
}

Event::Event(Event&& other) noexcept
    : event_(std::exchange(other.event_, nullptr)), device_(other.device_) {}

Event& Event::operator=(Event&& other) noexcept {
  if (this != &other) {
    if (event_ != nullptr) (void)cudaEventDestroy(event_);
    event_ = std::exchange(other.event_, nullptr);
    device_ = other.device_;
  }
  return *this;
}

void Event::record(cudaStream_t stream) {
  SL_CHECK(event_ != nullptr, "cuda::Event::record on a moved-from event");
  SL_CUDA_CHECK(cudaEventRecord(event_, stream));
}

void Event::wait(cudaStream_t stream) const {
  SL_CHECK(event_ != nullptr, "cuda::Event::wait on a moved-from event");
  SL_CUDA_CHECK(cudaStreamWaitEvent(stream, event_, 0));
}

void Event::synchronize() const {
  SL_CHECK(event_ != nullptr, "cuda::Event::synchronize on a moved-from event");
  SL_CUDA_CHECK(cudaEventSynchronize(event_));
}

bool Event::query() const {
  SL_CHECK(event_ != nullptr, "cuda::Event::query on a moved-from event");
  const cudaError_t status = cudaEventQuery(event_);
  if (status == cudaErrorNotReady) {
    (void)cudaGetLastError();
    return false;
  }
  SL_CUDA_CHECK(status);
  return true;
}

float Event::elapsed_ms_since(const Event& start) const {
  float ms = 0.0f;
  SL_CUDA_CHECK(cudaEventElapsedTime(&ms, start.event_, event_));
  return ms;
}

void stream_wait_stream(cudaStream_t waiter, cudaStream_t producer) {
  if (waiter == producer) return;
  Event e;
  e.record(producer);
  e.wait(waiter);  // the wait is enqueued; destroying the event afterwards is allowed
}

}  // namespace shardlab::cuda
