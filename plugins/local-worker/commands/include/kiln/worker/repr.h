#pragma once
// The texts a Buildbot worker writes into command headers, reproduced byte
// for byte: Python's repr of bytes, strings, lists and dicts, pipes.quote
// display of an argv, and Python's formatting of numbers.

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace kiln::worker {

// b'abc', b"it's", b'\x00\n'
std::string py_bytes_repr(std::string_view bytes);
// [b'ls', b'-l']
std::string py_bytes_list_repr(const std::vector<std::string>& items);
// Python repr of a JSON value: {'a': 'b', 'follow': True}, None, 1.5
std::string py_repr(const nlohmann::json& value);
// A number as str() prints it: 1200, 1.5
std::string py_number(const nlohmann::json& value);
// pipes.quote of each item, joined with spaces.
std::string shell_quote(const std::vector<std::string>& argv);

}  // namespace kiln::worker
