// Test fixtures every suite may use: a temporary directory removed with its contents, and an
// assertion on the type and message of an exception.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <exception>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

// Asserts that `statement` throws `Type` with every fragment (one or more strings) in its message.
#define EXPECT_THROW_WITH(statement, Type, ...)                                          \
  do {                                                                                   \
    try {                                                                                \
      statement;                                                                         \
      ADD_FAILURE() << "expected " #Type " containing "                                  \
                    << ::testing::PrintToString(std::vector<std::string>{__VA_ARGS__});  \
    } catch (const Type& e) {                                                            \
      for (const std::string& expected_fragment : std::vector<std::string>{__VA_ARGS__}) \
        EXPECT_NE(std::string(e.what()).find(expected_fragment), std::string::npos)      \
            << expected_fragment << " in " << e.what();                                  \
    } catch (const std::exception& e) {                                                  \
      ADD_FAILURE() << "expected " #Type ", got: " << e.what();                          \
    }                                                                                    \
  } while (0)

namespace moeflux::testing {

// A fresh directory under `parent` (the system's temporary directory unless given), removed with
// everything in it when the TempDir goes.
class TempDir {
 public:
  explicit TempDir(const std::string& parent = std::filesystem::temp_directory_path().string()) {
    std::string pattern = parent + "/moeflux_test_XXXXXX";
    path_ = ::mkdtemp(pattern.data()) != nullptr ? pattern : std::string();
    EXPECT_FALSE(path_.empty()) << "mkdtemp in " << parent << " failed";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace moeflux::testing
