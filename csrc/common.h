// Plumbing shared by every PJRT entry: the PJRT_Error object, the internal Status
// exception, struct_size versioning helpers and Guard(), which keeps C++ exceptions
// from ever crossing the C ABI.
#pragma once

#include <cstddef>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>

#include "pjrt_c_api.h"

// What a failing entry returns; the framework frees it with PJRT_Error_Destroy.
struct PJRT_Error {
  PJRT_Error_Code code;
  std::string message;
};

namespace pjrt_tt {

// A failure inside the shim. Thrown internally, turned into a PJRT_Error by Guard().
// `from_python` marks messages that already read well on their own (the exception
// text of the runtime); shim-made messages get the entry name prepended.
class Status : public std::exception {
 public:
  Status(PJRT_Error_Code code, std::string message, bool from_python = false)
      : code_(code), message_(std::move(message)), from_python_(from_python) {}
  PJRT_Error_Code code() const { return code_; }
  const std::string& message() const { return message_; }
  bool from_python() const { return from_python_; }
  const char* what() const noexcept override { return message_.c_str(); }

 private:
  PJRT_Error_Code code_;
  std::string message_;
  bool from_python_;
};

[[noreturn]] inline void Fail(PJRT_Error_Code code, std::string message) {
  throw Status(code, std::move(message));
}

inline PJRT_Error* MakeError(PJRT_Error_Code code, std::string message) {
  return new PJRT_Error{code, std::move(message)};
}

// ---------------------------------------------------------------------------
// struct_size versioning. jaxlib 0.7.1 and torch_xla 2.9 are built against PJRT
// 0.75 and pass smaller argument structs than our 0.81 header describes. A field
// exists for the caller only if it lies wholly inside args->struct_size: outputs
// beyond that are never written, inputs beyond that read as a default.
template <typename P>
using Pointee = std::remove_cv_t<std::remove_pointer_t<P>>;

#define PJRT_TT_FITS(args, field) \
  ((args)->struct_size >= offsetof(::pjrt_tt::Pointee<decltype(args)>, field) + sizeof((args)->field))

// Input field, or `fallback` when the caller's struct predates it.
#define PJRT_TT_IN(args, field, fallback) \
  (PJRT_TT_FITS(args, field) ? (args)->field : (fallback))

// Output field, written only when the caller's struct has room for it.
#define PJRT_TT_OUT(args, field, value)                     \
  do {                                                      \
    if (PJRT_TT_FITS(args, field)) (args)->field = (value); \
  } while (0)

// For outputs that hand over ownership (a new client, buffer, event...): refuse
// before doing any work rather than leak an object the caller cannot receive.
#define PJRT_TT_REQUIRE_OUT(args, field)                                       \
  do {                                                                         \
    if (!PJRT_TT_FITS(args, field))                                            \
      ::pjrt_tt::Fail(PJRT_Error_Code_INVALID_ARGUMENT,                        \
                      "output field '" #field "' lies beyond struct_size " +   \
                          std::to_string((args)->struct_size));                \
  } while (0)

template <typename T>
T* Required(T* pointer, const char* what) {
  if (pointer == nullptr) Fail(PJRT_Error_Code_INVALID_ARGUMENT, std::string(what) + " is null");
  return pointer;
}

// A mandatory handle argument: present in the caller's struct and non-null.
#define PJRT_TT_ARG(args, field) ::pjrt_tt::Required(PJRT_TT_IN(args, field, nullptr), #field)

// ---------------------------------------------------------------------------
// Every entry body runs inside Guard: no exception escapes, every failure becomes
// a PJRT_Error. Set PJRT_TT_TRACE=1 to log each entry name to stderr.
void TraceEntry(const char* entry);
bool TraceEnabled();

template <typename Body>
PJRT_Error* Guard(const char* entry, Body&& body) noexcept {
  if (TraceEnabled()) TraceEntry(entry);
  try {
    body();
    return nullptr;
  } catch (const Status& s) {
    if (s.from_python()) return MakeError(s.code(), s.message());
    return MakeError(s.code(), std::string(entry) + ": " + s.message());
  } catch (const std::exception& e) {
    return MakeError(PJRT_Error_Code_INTERNAL, std::string(entry) + ": " + e.what());
  } catch (...) {
    return MakeError(PJRT_Error_Code_INTERNAL, std::string(entry) + ": unknown C++ exception");
  }
}

// A value computed on first use (usually by asking Python) and then kept for the
// owner's lifetime, so pointers into it stay valid. The lock is never held while
// `fill` runs (it may wait for the GIL); if two threads race, the first result
// stored wins and the other is dropped, so a value is never replaced once handed out.
template <typename T>
class Once {
 public:
  template <typename Fill>  // Fill: () -> std::unique_ptr<T>
  const T& Get(Fill&& fill) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (value_) return *value_;
    }
    std::unique_ptr<T> fresh = fill();
    std::lock_guard<std::mutex> lock(mu_);
    if (!value_) value_ = std::move(fresh);
    return *value_;
  }

 private:
  std::mutex mu_;
  std::unique_ptr<T> value_;
};

// Each object kind fills its own slots of the function table.
void BindPluginAndErrors(PJRT_Api& api);
void BindEvent(PJRT_Api& api);
void BindClient(PJRT_Api& api);
void BindDevice(PJRT_Api& api);
void BindBuffer(PJRT_Api& api);
void BindExecutable(PJRT_Api& api);

}  // namespace pjrt_tt
