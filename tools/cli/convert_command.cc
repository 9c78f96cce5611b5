// shardlab convert SHARDED_DIR --out HF_DIR [--dtype f32|bf16|f16]: turns a sharded checkpoint
// (fsdp_state_dict_type: SHARDED_STATE_DICT) into a Hugging Face config.json + model.safetensors,
// offline in one process, like DeepSpeed's zero_to_fp32.py.
#include <cstdio>
#include <filesystem>

#include "distributed/checkpoint_convert.h"
#include "tools/cli/args.h"
#include "tools/cli/commands.h"

namespace shardlab::cli {

namespace fs = std::filesystem;

int run_convert(const std::vector<std::string>& argv) {
  Args args("convert", {{"out", true}, {"dtype", true}}, argv);
  SL_CHECK(args.positional().size() == 1, "expected one SHARDED_DIR (a checkpoint saved with ",
           "fsdp_state_dict_type: SHARDED_STATE_DICT), got ", args.positional().size(), " positional arguments");
  const std::string sharded_dir = args.positional()[0], out_dir = args.required("out");
  const std::string dtype_text = args.get("dtype", "f32");
  SL_CHECK(dtype_text == "f32" || dtype_text == "bf16" || dtype_text == "f16", "--dtype '",
           dtype_text, "' is not one of f32, bf16, f16");
  const DType dtype = dtype_text == "f32" ? DType::f32 : dtype_text == "bf16" ? DType::bf16 : DType::f16;
  SL_CHECK(!fs::exists(out_dir) || (fs::is_directory(out_dir) && fs::is_empty(out_dir)), "--out '",
           out_dir, "' already has files; choose a new directory (nothing was changed)");
  const int64_t tensors = dist::convert_sharded_to_safetensors(sharded_dir, out_dir, dtype);
  std::printf("converted %s: %ld tensors (%s) written to %s/model.safetensors\n", sharded_dir.c_str(),
              static_cast<long>(tensors), dtype_text.c_str(), out_dir.c_str());
  return 0;
}

}  // namespace shardlab::cli
