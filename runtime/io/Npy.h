// .npy files (NumPy format 1.0/2.0/3.0): read and write C-order arrays of
// f32, f16, f64, i64,
// i32, i16, i8, u8 and bool.
#pragma once

#include "lathe/Status.h"
#include "lathe/Tensor.h"

#include <string>

namespace lathe::io {

Expected<Tensor> readNpy(const std::string &path);
/// Writes through a temporary file renamed into place.
Status writeNpy(const std::string &path, const Tensor &tensor);

} // namespace lathe::io
