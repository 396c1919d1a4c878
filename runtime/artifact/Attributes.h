// Typed reads of a kernel's attributes, shared by the CPU and device kernels.
// Integer and float attributes convert into each other; a missing or
// differently typed attribute gives the default.
#pragma once

#include "runtime/artifact/ArtifactSpec.h"

#include <string>
#include <variant>
#include <vector>

namespace lathe::artifact {

inline const AttrValue *findAttr(const KernelSpec &k, const char *name) {
  auto it = k.attrs.find(name);
  return it == k.attrs.end() ? nullptr : &it->second;
}
inline int64_t intAttr(const KernelSpec &k, const char *name, int64_t def) {
  const AttrValue *a = findAttr(k, name);
  if (!a) return def;
  if (auto *i = std::get_if<int64_t>(a)) return *i;
  if (auto *d = std::get_if<double>(a)) return int64_t(*d);
  return def;
}
inline double floatAttr(const KernelSpec &k, const char *name, double def) {
  const AttrValue *a = findAttr(k, name);
  if (!a) return def;
  if (auto *d = std::get_if<double>(a)) return *d;
  if (auto *i = std::get_if<int64_t>(a)) return double(*i);
  return def;
}
inline std::string stringAttr(const KernelSpec &k, const char *name, const std::string &def) {
  const AttrValue *a = findAttr(k, name);
  if (a)
    if (auto *s = std::get_if<std::string>(a)) return *s;
  return def;
}
/// An int list (a single int counts as a list of one); false when absent.
inline bool intsAttr(const KernelSpec &k, const char *name, std::vector<int64_t> &out) {
  const AttrValue *a = findAttr(k, name);
  if (!a) return false;
  if (auto *v = std::get_if<std::vector<int64_t>>(a)) { out = *v; return true; }
  if (auto *i = std::get_if<int64_t>(a)) { out = {*i}; return true; }
  return false;
}

} // namespace lathe::artifact
