// Command-line options of one shardlab subcommand: "--name value" and "--flag", each declared up
// front, so an unknown option is an error that names it and the closest known one.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace shardlab::cli {

class Args {
 public:
  // `spec`: option name -> takes a value. Positional arguments are collected in order.
  Args(const std::string& command, const std::map<std::string, bool>& spec, const std::vector<std::string>& argv);

  bool has(const std::string& name) const { return values_.contains(name); }
  std::string get(const std::string& name, const std::string& fallback) const;
  std::string required(const std::string& name) const;
  int64_t get_int(const std::string& name, int64_t fallback) const;
  double get_double(const std::string& name, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::string command_;
  std::map<std::string, std::string> values_;
  std::vector<std::string> positional_;
};

}  // namespace shardlab::cli
