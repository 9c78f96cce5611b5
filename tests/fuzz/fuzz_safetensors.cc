// Fuzzes SafetensorsFile::open on arbitrary bytes and reads every tensor it accepts. A rejected
// file must fail with shardlab::Error; an accepted one must hold tensors whose bytes fit the mapping.
#include <cstring>

#include "core/error.h"
#include "core/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  shardlab::fuzz::MemFile file(data, size);
  try {
    const shardlab::SafetensorsFile f = shardlab::SafetensorsFile::open(file.path());
    size_t total = 0;
    for (const std::string& name : f.names()) {
      const shardlab::SafetensorsTensorInfo& info = f.info(name);
      const std::string_view raw = f.bytes(name);
      FUZZ_ASSERT(raw.size() == info.end - info.begin, "tensor %s: bytes() size %zu", name.c_str(), raw.size());
      total += raw.size();
      const shardlab::Tensor t = f.get(name);
      const size_t nbytes = static_cast<size_t>(t.nbytes());
      FUZZ_ASSERT(nbytes == raw.size(), "tensor %s: get() holds %zu bytes, the file %zu", name.c_str(), nbytes,
                  raw.size());
      FUZZ_ASSERT(nbytes == 0 || std::memcmp(t.raw_data(), raw.data(), nbytes) == 0, "tensor %s: get() bytes differ",
                  name.c_str());
    }
    FUZZ_ASSERT(total <= size, "tensors cover %zu bytes of a %zu-byte file", total, size);
    (void)f.metadata();
  } catch (const shardlab::Error& e) {
    shardlab::fuzz::rejected(e);  // a message: what a corrupt file should get
  }
  return 0;
}
