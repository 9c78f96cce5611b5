// UTF-8 validation against hand-built well-formed and ill-formed byte sequences.
#include <gtest/gtest.h>

#include "core/utf8.h"

namespace shardlab {
namespace {

TEST(Utf8, AcceptsWellFormedTextOfEveryLength) {
  EXPECT_EQ(first_invalid_utf8("plain ascii"), std::string::npos);
  EXPECT_EQ(first_invalid_utf8("h\xC3\xA9llo \xE4\xB8\xAD \xF0\x9F\x98\x80"), std::string::npos);  // é, 中, 😀
  EXPECT_EQ(first_invalid_utf8("\xF4\x8F\xBF\xBF"), std::string::npos);                           // U+10FFFF
}

TEST(Utf8, FindsTheFirstIllFormedByte) {
  EXPECT_EQ(first_invalid_utf8("ab\xBE"), 2u);              // lone continuation byte
  EXPECT_EQ(first_invalid_utf8("\xC0\xAF"), 0u);            // overlong '/'
  EXPECT_EQ(first_invalid_utf8("x\xED\xA0\x80"), 1u);       // surrogate U+D800
  EXPECT_EQ(first_invalid_utf8("\xF4\x90\x80\x80"), 0u);    // above U+10FFFF
  EXPECT_EQ(first_invalid_utf8("ok\xE4\xB8"), 2u);          // truncated sequence
}

}  // namespace
}  // namespace shardlab
