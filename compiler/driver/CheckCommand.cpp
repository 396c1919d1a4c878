// lathe check: every node the importer cannot handle, all at once.
#include "compiler/driver/Commands.h"
#include "compiler/import/gguf/ImportGguf.h"
#include "compiler/import/onnx/ImportOnnx.h"
#include "compiler/pipeline/Pipeline.h"

#include "mlir/IR/MLIRContext.h"

#include <algorithm>
#include <iomanip>
#include <iostream>

namespace lathe::driver {

static bool isGguf(const std::string &path) {
  return path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
}

int runCheck(const std::string &model) {
  if (isGguf(model)) {
    auto result = importer::checkGgufFile(model);
    if (!result.fatalError.empty()) {
      std::cerr << "error: " << model << ": " << result.fatalError << "\n";
      return 1;
    }
    if (result.problems.empty()) {
      std::cout << model << ": " << result.summary << "\n";
      return 0;
    }
    std::cout << model << ": " << result.problems.size() << " problem(s) prevent the import\n";
    for (const auto &p : result.problems) std::cout << "  " << p << "\n";
    return 1;
  }
  mlir::MLIRContext context;
  pipeline::registerDialects(context);
  auto result = importer::importOnnxFile(context, model);
  if (!result.fatalError.empty()) {
    std::cerr << "error: " << model << ": " << result.fatalError << "\n";
    return 1;
  }
  if (result.problems.empty()) {
    std::cout << model << ": all " << result.nodeCount << " nodes are supported (opset " << result.opset << ")\n";
    return 0;
  }
  size_t nameWidth = 4, opWidth = 7;
  for (const auto &p : result.problems) {
    nameWidth = std::max(nameWidth, p.nodeName.size());
    opWidth = std::max(opWidth, p.opType.size() + (p.domain.empty() ? 0 : p.domain.size() + 1));
  }
  std::cout << model << ": " << result.problems.size() << " of " << result.nodeCount
            << " nodes cannot be imported (opset " << result.opset << ")\n";
  std::cout << std::left << std::setw(int(nameWidth)) << "node" << "  " << std::setw(int(opWidth)) << "op type"
            << "  opset  reason\n";
  for (const auto &p : result.problems) {
    std::string op = p.domain.empty() ? p.opType : p.domain + "." + p.opType;
    std::cout << std::left << std::setw(int(nameWidth)) << p.nodeName << "  " << std::setw(int(opWidth)) << op
              << "  " << std::setw(5) << p.opset << "  " << p.reason << "\n";
  }
  return 1;
}

} // namespace lathe::driver
