#pragma once
// Shared by the store's engine and data API tests: an in-memory store, and
// unwrapping of results that must succeed (the message shows when not).

#include "store/store.h"

#include <catch2/catch.hpp>

#include <memory>

namespace kiln::testing {

inline std::unique_ptr<store::Store> open_memory_store() {
  store::OpenOptions o;
  o.url = "sqlite::memory:";
  o.mode = store::OpenMode::kCreate;
  auto r = store::open_store(std::move(o));
  INFO(r.status.message);
  REQUIRE(r.ok());
  return std::move(r.value);
}

template <class T>
T ok(store::Result<T> r) {
  INFO(r.status.message);
  REQUIRE(r.ok());
  return std::move(r.value);
}

inline void ok(const store::Status& s) {
  INFO(s.message);
  REQUIRE(s.ok());
}

}  // namespace kiln::testing
