# Checks that README.md shows the README example byte for byte: the lines between
# "// [readme-begin]" and "// [readme-end]" in SOURCE must appear as a ```cpp block in README.
# Usage: cmake -DREADME=README.md -DSOURCE=tools/readme_example.cc -P tools/check_readme_sync.cmake
foreach(var README SOURCE)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_readme_sync: pass -D${var}=<path>")
  endif()
endforeach()
file(READ "${README}" readme)
file(READ "${SOURCE}" source)

set(begin_marker "// [readme-begin]\n")
set(end_marker "// [readme-end]\n")
string(FIND "${source}" "${begin_marker}" begin)
string(FIND "${source}" "${end_marker}" end)
if(begin EQUAL -1 OR end EQUAL -1 OR end LESS begin)
  message(FATAL_ERROR "check_readme_sync: ${SOURCE} lacks the '// [readme-begin]' ... '// [readme-end]' lines")
endif()
string(LENGTH "${begin_marker}" marker_length)
math(EXPR begin "${begin} + ${marker_length}")
math(EXPR length "${end} - ${begin}")
string(SUBSTRING "${source}" ${begin} ${length} region)

string(FIND "${readme}" "```cpp\n${region}```\n" found)
if(found EQUAL -1)
  message(FATAL_ERROR "check_readme_sync: ${README} has no ```cpp block equal to the marked region of "
                      "${SOURCE}. Copy these lines into the README's code block:\n${region}")
endif()
message(STATUS "README code block matches ${SOURCE}")
