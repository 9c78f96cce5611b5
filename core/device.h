// Where a tensor lives: the CPU or one CUDA device. Parsed from and printed as "cpu" / "cuda:N".
#pragma once

#include <compare>
#include <string>
#include <string_view>

namespace shardlab {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static Device cpu() { return {DeviceType::cpu, 0}; }
  static Device cuda(int index = 0) { return {DeviceType::cuda, index}; }
  bool is_cpu() const { return type == DeviceType::cpu; }
  bool is_cuda() const { return type == DeviceType::cuda; }
  std::string str() const;
  static Device parse(std::string_view text);  // "cpu", "cuda", "cuda:1"
  auto operator<=>(const Device&) const = default;
};

}  // namespace shardlab
